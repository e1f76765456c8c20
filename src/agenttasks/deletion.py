"""Deleting finished tasks: the audit record first, then the stored events, then the stream.

Order, and why:
1. Only a finished task whose every event the tasks read model has applied (so the relay has
   published them all) is deleted: the relay never loses an event it has yet to publish.
2. An intent row in `task_deletions` (so a killed run is finished by the next one), then a
   `TaskDeletion` record in the store. The projectors drop the task's rows when they apply
   its payload (`PurgedEvent`), which comes after every event of the task: nothing re-creates
   them, and a replay rebuilds the same tables.
3. One transaction removes the task's stored events, its owner-index row, its webhook outbox
   rows (attempts cascade) and its quarantine rows. Gaps in notification ids are normal for
   the relay (it reads "after position N", never waits for N+1).
4. The task's stream messages are purged (by subject) only once every read model has applied
   the purge, so a projector never meets a hole in the sequence it has still to read.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.utils import get_topic

from agenttasks import quarantine
from agenttasks.application.bus_payloads import mapper_for
from agenttasks.application.store import EventStore, PositionedEvent, history
from agenttasks.application.tasks import Actor, TaskNotFound
from agenttasks.application.undecodable import decoded
from agenttasks.application.user_log import OWNERS
from agenttasks.bus.connection import Bus
from agenttasks.bus.messages import TaskEvent, task_subject
from agenttasks.domain.deletion import TaskDeletion, deletion_id
from agenttasks.domain.rules import FINISHED, RuleViolation
from agenttasks.domain.task import Task
from agenttasks.projections.statistics import ASSIGNMENTS, SUMS, call_sums

log = logging.getLogger(__name__)

TABLE = "task_deletions"
DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    task_id uuid PRIMARY KEY,
    task_type text NOT NULL,
    priority text NOT NULL,
    position bigint,                          -- the deletion record's, once saved
    stored_deleted boolean NOT NULL DEFAULT false,
    started_at timestamptz NOT NULL DEFAULT now()
)
"""
_OWNERS_LOCK = 0x61677474_6F776E72  # user_log's: its index extension never re-adds a row
DDL_LOCK = 0x61677464_656C6574  # "agtdelet": one creator of the table at a time
RECORD_TOPIC = get_topic(TaskDeletion.Created)
STREAM_BATCH = 500  # tasks' stream messages purged per idle step of the relay
INTERRUPTED_AFTER_SECONDS = 300  # an intent row this old without its deletes: a killed run


class TaskNotFinished(RuleViolation):
    """Only a completed, failed or cancelled task can be deleted."""


class NotYetProjected(RuleViolation):
    """The task's last events are still on their way to the read models."""


@dataclass(frozen=True)
class Deleted:
    """One deleted task: its deletion record's position and the stored events removed."""

    task_id: UUID
    position: int
    events: int


@dataclass(frozen=True)
class Candidate:
    """A task checked and ready to delete, with its deletion record."""

    task_id: UUID
    task_type: str
    priority: str
    record: TaskDeletion


class Deleter:
    """Deletes finished tasks from the store, the read models, the outbox and the stream."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._mapper = mapper_for(store)
        recorder: Any = store.recorder
        self._datastore: Any = recorder.datastore  # Postgres only: rows are deleted in SQL
        self._events_table: str = recorder.events_table_name

    def delete(self, actor: Actor, task_id: UUID) -> Deleted:
        """Deletes one task for `actor` (its owner or an admin); TaskNotFound, TaskNotFinished."""
        self.finish_interrupted()
        if self._record_position(task_id) is not None:
            raise TaskNotFound(task_id)  # deleted already (a repeat)
        items = history(self.store, task_id)
        owner = _owner(items)
        if owner is None or not actor.may_see(owner):
            raise TaskNotFound(task_id)
        reason = "user" if owner == actor.user_id else "admin"
        candidate = self.check(task_id, items, actor=actor.user_id, reason=reason)
        deleted = self.delete_checked([candidate])
        if not deleted:
            raise TaskNotFound(task_id)  # another deleter got there first
        return deleted[0]

    def check(
        self, task_id: UUID, items: list[PositionedEvent], *, actor: str, reason: str
    ) -> Candidate:
        """The deletion record for a task, after its checks (finished, fully projected)."""
        first = items[0].event if items else None
        if not isinstance(first, Task.Created):
            raise TaskNotFound(task_id)
        row: dict[str, Any] = {}
        sums: dict[str, Any] = dict.fromkeys(SUMS, 0)
        # The statistics read model's own fold over the task's payloads: the figures the
        # record keeps are exactly the ones the live row holds.
        for item in items:
            event = self._mapper.map(item.event, item.position)
            if not isinstance(event, TaskEvent):
                continue
            if assign := ASSIGNMENTS.get(event.type):
                row.update(assign(event))
            elif event.type == "model_call":
                for column, value in call_sums(event).items():
                    sums[column] += value
        status = str(row.get("status"))
        if status not in FINISHED:
            raise TaskNotFinished(f"only a finished task can be deleted; this one is {status}")
        if self._projected(task_id) < items[-1].position:
            raise NotYetProjected("the task's last events are still being applied; try again")
        record = TaskDeletion.record(
            task_id=task_id,
            actor=actor,
            reason=reason,
            owner=first.created_by,
            task_type=first.task_type,
            priority=first.priority,
            status=status,
            created_at=row["created_at"],
            started_at=row.get("started_at"),
            finished_at=row.get("finished_at"),
            prompt_tokens=row.get("prompt_tokens"),
            completion_tokens=row.get("completion_tokens"),
            template_id=first.template_id,
            template_version=first.template_version,
            events=len(items),
            cost_usd=str(sums["cost_usd"]) if sums["model_calls"] else None,
            model_calls=sums["model_calls"],
            unpriced_calls=sums["unpriced_calls"],
            call_prompt_tokens=sums["call_prompt_tokens"],
            call_completion_tokens=sums["call_completion_tokens"],
            cached_tokens=sums["cached_tokens"],
        )
        return Candidate(task_id, first.task_type, first.priority, record)

    def delete_checked(self, candidates: list[Candidate]) -> list[Deleted]:
        """Records and deletes checked tasks: one save, one transaction of deletes.

        A task another deleter recorded meanwhile is left out (that one finishes it).
        """
        if not candidates:
            return []
        with self._datastore.transaction(commit=True) as cursor:
            cursor.executemany(
                f"INSERT INTO {TABLE} (task_id, task_type, priority)"  # noqa: S608
                " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                [(c.task_id, c.task_type, c.priority) for c in candidates],
            )
        try:
            recordings = self.store.save(*(c.record for c in candidates))
        except IntegrityError:
            if len(candidates) == 1:
                return []
            return [d for c in candidates for d in self.delete_checked([c])]
        positions = {r.domain_event.originator_id: r.notification.id for r in recordings}
        done = [(c.task_id, positions[c.record.id]) for c in candidates]
        removed = self._remove(done)
        return [Deleted(task_id, position, removed.get(task_id, 0)) for task_id, position in done]

    def finish_interrupted(self) -> int:
        """Finishes deletions a killed run left half done; returns how many it finished."""
        with self._datastore.transaction(commit=False) as cursor:
            # Only rows older than any deletion takes: a younger one is another deleter's, under
            # way now (removing its intent row would leave its stream messages behind).
            cursor.execute(
                f"SELECT task_id, position FROM {TABLE} WHERE NOT stored_deleted"  # noqa: S608
                " AND started_at < now() - make_interval(secs => %s)",
                (INTERRUPTED_AFTER_SECONDS,),
            )
            rows = cursor.fetchall()
        done: list[tuple[UUID, int]] = []
        for row in rows:
            found = row["position"] or self._record_position(row["task_id"])
            if found is None:
                # Killed before the record was saved: nothing happened yet; start again.
                with self._datastore.transaction(commit=True) as cursor:
                    cursor.execute(
                        f"DELETE FROM {TABLE} WHERE task_id = %s",  # noqa: S608
                        (row["task_id"],),
                    )
                continue
            done.append((row["task_id"], found))
        if done:
            self._remove(done)
        return len(done)

    def pending_stream(self) -> int:
        """Deleted tasks whose stream messages wait for the read models and the relay."""
        with self._datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT count(*) AS n FROM {TABLE}")  # noqa: S608
            row = cursor.fetchone()
        return int(row["n"]) if row else 0

    def _remove(self, done: list[tuple[UUID, int]]) -> dict[UUID, int]:
        ids = [task_id for task_id, _ in done]
        with self._datastore.transaction(commit=True) as cursor:
            # The owner index's lock: an extension running now cannot re-add a deleted row.
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_OWNERS_LOCK,))
            cursor.execute(
                f"DELETE FROM {self._events_table} WHERE originator_id = ANY(%s)"  # noqa: S608
                " RETURNING originator_id",
                (ids,),
            )
            removed: dict[UUID, int] = {}
            for row in cursor.fetchall():
                removed[row["originator_id"]] = removed.get(row["originator_id"], 0) + 1
            for table, column, values in (
                (OWNERS, "task_id", ids),
                ("webhook_deliveries", "task_id", ids),  # its attempts go with it (cascade)
                (quarantine.TABLE, "originator_id", [str(i) for i in ids]),
            ):
                cursor.execute("SELECT to_regclass(%s) AS t", (table,))
                exists = cursor.fetchone()
                if exists and exists["t"] is not None:
                    cursor.execute(
                        f"DELETE FROM {table} WHERE {column} = ANY(%s)",  # noqa: S608
                        (values,),
                    )
            cursor.executemany(
                f"UPDATE {TABLE} SET position = %s, stored_deleted = true"  # noqa: S608
                " WHERE task_id = %s",
                [(position, task_id) for task_id, position in done],
            )
        return removed

    def _record_position(self, task_id: UUID) -> int | None:
        for item in history(self.store, deletion_id(task_id)):
            return item.position
        return None

    def _projected(self, task_id: UUID) -> int:
        with self._datastore.transaction(commit=False) as cursor:
            cursor.execute("SELECT last_position FROM tasks WHERE id = %s", (task_id,))
            row = cursor.fetchone()
        return int(row["last_position"]) if row else 0


def ensure_table(cursor: psycopg.Cursor[Any]) -> None:
    """Creates the intent table if needed (one creator at a time)."""
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
    cursor.execute(DDL)


class StreamPurge:
    """Purges deleted tasks' stream messages once every read model has passed their deletion.

    The relay runs it when idle (it holds the right to change the stream), on the connection it
    already holds: one statement a second, no connection of its own (it used to open one every
    idle second). A read model that has never run (no tracking row) holds every purge back: it
    would read the stream from its start and find the holes.
    """

    def __init__(self, projections: Sequence[str]) -> None:
        self.projections = tuple(projections)

    async def __call__(self, bus: Bus, connection: psycopg.AsyncConnection[Any]) -> int:
        """Purges what is due; returns the number of tasks whose messages went."""
        due = await self._due(connection)
        for _, subject in due:
            await bus.purge_subject(subject)
        if due:
            query = f"DELETE FROM {TABLE} WHERE task_id = ANY(%s)"  # noqa: S608
            await connection.execute(query, ([task_id for task_id, _ in due],))
        return len(due)

    async def _due(self, connection: psycopg.AsyncConnection[Any]) -> list[tuple[UUID, str]]:
        # One statement: the lowest tracked position, NULL (nothing due) while a read model
        # has no tracking row yet.
        cursor = await connection.execute(
            f"SELECT task_id, task_type, priority FROM {TABLE}"  # noqa: S608
            " WHERE stored_deleted AND position <= ("
            "   SELECT CASE WHEN count(*) = %s THEN min(position) END"
            "     FROM projection_tracking WHERE name = ANY(%s))"
            " LIMIT %s",
            (len(self.projections), list(self.projections), STREAM_BATCH),
        )
        return [
            (task_id, task_subject(task_type=t, priority=p, task_id=str(task_id)))
            for task_id, t, p in await cursor.fetchall()
        ]


MAX_LISTED = 10_000  # deletion records one listing shows at most


def deletion_records(
    store: EventStore, *, task_id: UUID | None = None, limit: int = 100
) -> list[PositionedEvent]:
    """The newest deletion records (or the one of `task_id`): the audit trail of deletions."""
    if task_id is not None:
        return history(store, deletion_id(task_id))
    recorder: Any = store.recorder
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(
            f"SELECT notification_id, originator_id, originator_version, state "  # noqa: S608
            f"FROM {recorder.events_table_name} WHERE topic = %s "
            f"ORDER BY notification_id DESC LIMIT %s",
            (RECORD_TOPIC, max(1, min(limit, MAX_LISTED))),
        )
        rows = cursor.fetchall()
    return [
        PositionedEvent(
            row["notification_id"],
            decoded(
                store.mapper,
                StoredEvent(
                    row["originator_id"], row["originator_version"], RECORD_TOPIC, row["state"]
                ),
            ),
        )
        for row in rows
    ]


def _owner(items: list[PositionedEvent]) -> str | None:
    first = items[0].event if items else None
    return first.created_by if isinstance(first, Task.Created) else None
