"""Task commands: load the aggregate, call one method, save; return what the caller needs.

Every command returns the position (notification id) of its last event, so a caller can wait
until a read model has caught up with its own write. Version conflicts (a cancel racing a
progress report) are retried with a fresh load, and the domain's rules decide the outcome.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from agenttasks.application.conflicts import ConcurrencyError as ConcurrencyError  # re-exported
from agenttasks.application.conflicts import retry_on_conflict
from agenttasks.application.group_commit import GroupCommitter
from agenttasks.application.loop_commit import LoopCommitter
from agenttasks.application.store import EventStore, PositionedEvent, history
from agenttasks.application.task_configs import normalized_config
from agenttasks.application.undecodable import Undecodable
from agenttasks.domain.task import Task, command_trace
from agenttasks.observability import context

MAX_TITLE_CHARS = 200
_TASK_TOPIC = f"{Task.__module__}:{Task.__qualname__}."
log = logging.getLogger(__name__)
_IDEMPOTENCY_NAMESPACE = uuid5(NAMESPACE_URL, "https://agenttasks/idempotency-key")


class TaskNotFound(LookupError):
    """No such task, or not one the actor may see (the two are never told apart)."""


class IdempotencyKeyReused(Exception):
    """An Idempotency-Key first used with another request (another endpoint or body)."""

    def __init__(self) -> None:
        super().__init__(
            "this Idempotency-Key was first used with a different request (another endpoint "
            "or body); send a new key for a new request"
        )


@dataclass(frozen=True)
class Actor:
    """Who is asking: a user id and whether they are an admin."""

    user_id: str
    is_admin: bool = False

    def may_see(self, owner: str) -> bool:
        """Admins see every task; everyone else only their own."""
        return self.is_admin or owner == self.user_id


SYSTEM = Actor("system", is_admin=True)


@dataclass(frozen=True)
class Written:
    """The outcome of a command: the task's id, the position of its last event, its new state."""

    task_id: UUID
    position: int | None  # None when nothing was written (an idempotent repeat)
    created: bool = True
    task: Task | None = None  # the aggregate as the command left it


@dataclass(frozen=True)
class NewTask:
    """A request to create a task, before validation."""

    title: str
    task_type: str
    task_config: dict[str, Any]
    priority: str = "normal"
    template_id: UUID | None = None
    template_version: int | None = None
    max_retries: int = 3
    timeout_seconds: int = 7200
    webhook_url: str | None = None  # checked by the caller (application/webhooks.py)


class TaskCommands:
    """The write side of tasks, for the API (on behalf of users) and the workers (as SYSTEM)."""

    def __init__(self, store: EventStore, committer: GroupCommitter) -> None:
        self.store = store
        self._save = committer.save

    def create(self, actor: Actor, new: NewTask, idempotency_key: str | None = None) -> Written:
        """Creates a task; the same key and request again from the same user: the first task.

        The key reused with a different request raises IdempotencyKeyReused.
        """
        with _traced():
            task = self.build(actor, new, idempotency_key)
        try:
            recordings = self._save(task)
        except IntegrityError:
            if idempotency_key is None:
                raise
            return self.repeated(actor, task)
        return _created(task, recordings[-1].notification.id)

    async def create_on_loop(
        self,
        actor: Actor,
        new: NewTask,
        idempotency_key: str | None,
        committer: LoopCommitter,
        run: Callable[[Callable[[Actor, Task], Written], Actor, Task], Awaitable[Written]],
    ) -> Written:
        """`create` on the event loop, saved by the loop's group commit (no command thread).

        Same checks, same outcomes; only the idempotent repeat's read of the first task goes
        through `run` (a store thread: the store's reads are synchronous).
        """
        with _traced():
            task = self.build(actor, new, idempotency_key)
        try:
            positions = await committer.save(task)
        except IntegrityError:
            if idempotency_key is None:
                raise
            return await run(self.repeated, actor, task)
        return _created(task, positions[-1])

    def repeated(self, actor: Actor, task: Task) -> Written:
        """The answer to a create whose key's task exists: that task, or IdempotencyKeyReused."""
        if _request_of(self.get(actor, task.id)) != _request_of(task):
            raise IdempotencyKeyReused() from None
        return Written(task.id, None, created=False)

    def build(self, actor: Actor, new: NewTask, idempotency_key: str | None = None) -> Task:
        """The new, unsaved aggregate (batching writers save many in one transaction)."""
        title = new.title.strip()
        if "\x00" in title:
            raise ValueError("title must not contain NUL characters")
        if len(title) > MAX_TITLE_CHARS:
            raise ValueError(f"title is {len(title)} characters; the limit is {MAX_TITLE_CHARS}")
        task_id = None
        if idempotency_key is not None:
            task_id = uuid5(_IDEMPOTENCY_NAMESPACE, f"{actor.user_id}\n{idempotency_key}")
        return Task.create(
            title=title,
            task_type=new.task_type,
            task_config=normalized_config(new.task_type, new.task_config),
            created_by=actor.user_id,
            priority=new.priority,
            template_id=new.template_id,
            template_version=new.template_version,
            max_retries=new.max_retries,
            timeout_seconds=new.timeout_seconds,
            task_id=task_id,
            webhook_url=new.webhook_url,
        )

    def get(self, actor: Actor, task_id: UUID) -> Task:
        """The task's current state from its events."""
        try:
            task: Task = self.store.repository.get(task_id)
        except AggregateNotFoundError:
            raise TaskNotFound(task_id) from None
        if not isinstance(task, Task) or not actor.may_see(task.created_by):
            raise TaskNotFound(task_id)
        return task

    def history(self, actor: Actor, task_id: UUID) -> list[PositionedEvent]:
        """The task's stored events with their positions: the audit trail."""
        # Not through get(): one undecodable event would make the whole trail unreadable.
        # history() marks such an event instead; the owner comes from the Created event.
        items = history(self.store, task_id)
        first = items[0].event if items else None
        if isinstance(first, Task.Created):
            owner: str | None = first.created_by
        elif isinstance(first, Undecodable) and first.topic.startswith(_TASK_TOPIC):
            owner = None  # who owns it cannot be read: only an admin may see what is left
        else:
            raise TaskNotFound(task_id)
        if not (actor.is_admin if owner is None else actor.may_see(owner)):
            raise TaskNotFound(task_id)
        return items

    # On behalf of users.

    def cancel(self, actor: Actor, task_id: UUID, reason: str = "") -> Written:
        """Cancels a pending or running task."""
        return self._update(actor, task_id, lambda t: t.cancel(by=actor.user_id, reason=reason))

    def retry(self, actor: Actor, task_id: UUID) -> Written:
        """Retries a failed or cancelled task by hand, as a new attempt."""
        return self._update(actor, task_id, lambda t: t.retry(by=actor.user_id))

    # On behalf of workers. `known` is the worker's copy of its task as it last saved it.

    def start(self, task_id: UUID, attempt: int, worker_id: str) -> Written:
        """Starts the given attempt; refused unless the task is pending on it."""
        return self._update(SYSTEM, task_id, lambda t: t.start(attempt, worker_id))

    def start_offered(self, offered: Task, position: int, worker_id: str) -> Written:
        """Starts attempt 1 from the task its created message built (at `position`).

        The copy is used only while the store holds exactly that Created event and nothing
        after it (one tiny query instead of reading and decoding the events); otherwise the
        task is loaded as `start` does. A copy that goes stale after the check conflicts on
        the version at save and the retry loads afresh. The position also tells a deleted
        and re-created task (same id, from an Idempotency-Key) from the one the message offered.
        """
        fresh = _only_created(self.store, offered.id, position)
        known = offered if fresh else None
        return self._update(SYSTEM, offered.id, lambda t: t.start(1, worker_id), known)

    def report_progress(
        self,
        task_id: UUID,
        attempt: int,
        progress: int,
        message: str,
        *,
        known: Task | None = None,
    ) -> Written:
        """Records progress of the running attempt (0..100, never down)."""
        return self._update(
            SYSTEM, task_id, lambda t: t.report_progress(attempt, progress, message), known
        )

    def record_result(
        self,
        task_id: UUID,
        attempt: int,
        data: dict[str, Any],
        message: str = "",
        *,
        known: Task | None = None,
    ) -> Written:
        """Records a partial result of the running attempt."""
        return self._update(
            SYSTEM, task_id, lambda t: t.record_result(attempt, data, message), known
        )

    def note(
        self,
        task_id: UUID,
        attempt: int,
        message: str,
        data: dict[str, Any] | None = None,
        *,
        error: bool = False,
        known: Task | None = None,
    ) -> Written:
        """Records information, or a non-fatal error, about the running attempt."""
        return self._update(
            SYSTEM, task_id, lambda t: t.note(attempt, message, data, error=error), known
        )

    def record_model_call(
        self, task_id: UUID, attempt: int, call: dict[str, Any], *, known: Task | None = None
    ) -> Written:
        """Records one model call of the running attempt (Task.ModelCalled; docs/cost.md)."""
        return self._update(SYSTEM, task_id, lambda t: t.record_model_call(attempt, **call), known)

    def report_many(
        self,
        task_id: UUID,
        steps: Sequence[Callable[[Task], None]],
        *,
        known: Task | None = None,
    ) -> Written:
        """Applies several reports of the running attempt in order and saves them in one append.

        Each step is one aggregate method (so each is refused for a stale attempt, as alone);
        the events are stored together or not at all.
        """

        def command(task: Task) -> None:
            for step in steps:
                step(task)

        return self._update(SYSTEM, task_id, command, known)

    def complete(
        self,
        task_id: UUID,
        attempt: int,
        result_data: dict[str, Any],
        message: str = "",
        *,
        known: Task | None = None,
    ) -> Written:
        """Completes the running attempt with its result."""
        return self._update(
            SYSTEM, task_id, lambda t: t.complete(attempt, result_data, message), known
        )

    def fail(
        self,
        task_id: UUID,
        attempt: int,
        error_kind: str,
        error_message: str,
        *,
        retryable: bool = False,
        retry_in: Callable[[int], float] | None = None,
        known: Task | None = None,
    ) -> Written:
        """Fails the current attempt (running, or pending that timed out).

        With `retry_in` the failure is retryable: when automatic retries remain, a Retried event
        is saved in the same transaction, not before `retry_in(retries so far)` seconds from
        now, so a crash between the two can never leave a retryable task failed for good.
        """

        def command(task: Task) -> None:
            task.fail(attempt, error_kind, error_message, retryable or retry_in is not None)
            if retry_in is not None and task.automatic_retries < task.max_retries:
                delay = retry_in(task.automatic_retries)
                task.retry(
                    "system",
                    automatic=True,
                    reason=f"Retrying after {error_kind}: {error_message}"[:500],
                    not_before=datetime.now(UTC) + timedelta(seconds=delay) if delay > 0 else None,
                )

        return self._update(SYSTEM, task_id, command, known)

    def expire(self, task_id: UUID, attempt: int, cutoff: datetime, message: str) -> Written:
        """Fails a task pending since before `cutoff` (error_kind expired, not retried).

        A worker that started it meanwhile wins: the aggregate refuses to expire a started task.
        """
        return self._update(SYSTEM, task_id, lambda t: t.expire(attempt, cutoff, message))

    def retry_automatically(
        self, task_id: UUID, reason: str, not_before: datetime | None = None
    ) -> Written:
        """Retries a failed task as a new attempt, within max_retries."""
        return self._update(
            SYSTEM,
            task_id,
            lambda t: t.retry("system", automatic=True, reason=reason, not_before=not_before),
        )

    def _update(
        self,
        actor: Actor,
        task_id: UUID,
        command: Callable[[Task], None],
        known: Task | None = None,
    ) -> Written:
        # `known` is the caller's copy of the aggregate as last saved (a worker holds its task
        # while it runs): it saves a read of the events. If someone else appended meanwhile the
        # save conflicts, and the retry falls back to loading afresh.
        held = [known] if known is not None else []

        def attempt() -> Written:
            task = held.pop() if held else self.get(actor, task_id)
            with _traced():
                command(task)
            recordings = self._save(task)
            return Written(task_id, recordings[-1].notification.id, task=task)

        with context.bound(task=task_id):
            return retry_on_conflict(attempt, f"task {task_id}")


def _created(task: Task, position: int) -> Written:
    if log.isEnabledFor(logging.DEBUG):
        with context.bound(task=task.id):
            log.debug("created a %s task at position %d", task.task_type, position)
    return Written(task.id, position, task=task)


def _only_created(store: EventStore, task_id: UUID, position: int) -> bool:
    """Whether the task's only stored event is the one at notification id `position`."""
    recorder: Any = store.recorder
    if not hasattr(recorder, "datastore"):  # in memory (tests): no cheap check, load instead
        return False
    with recorder.datastore.get_connection() as connection, connection.cursor() as cursor:
        cursor.execute(
            f"SELECT notification_id FROM {recorder.events_table_name} "  # noqa: S608
            f"WHERE originator_id = %s ORDER BY originator_version LIMIT 2",
            (task_id,),
            prepare=True,
        )
        rows = cursor.fetchall()
    return len(rows) == 1 and rows[0]["notification_id"] == position


@contextmanager
def _traced() -> Iterator[None]:
    """The events a command triggers within the block record the trace of the span under way."""
    token = command_trace.set(context.current_traceparent())
    try:
        yield
    finally:
        command_trace.reset(token)


def _request_of(task: Task) -> str:
    """What a create request asked for, as the task's creation stored it (canonical JSON).

    The key derives the task's id, so a repeat finds the first task; comparing these fields
    tells a repeat from a different request under the same key. From a template, the fields
    are the merged outcome: a repeat after the template's defaults or name changed asks for a
    different task, and is refused as one.
    """
    asked = [
        task.title,
        task.task_type,
        task.task_config,
        task.priority,
        task.template_id,
        task.max_retries,
        task.timeout_seconds,
        task.webhook_url,
    ]
    return json.dumps(asked, sort_keys=True, default=str)
