"""From a bus message to a Job: which attempt of which task a created/retried event offers."""

from __future__ import annotations

import inspect
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.domain import (
    BaseAggregate,
    CanInitAggregate,
    CanMutateAggregate,
    _init_mentions_id,
)
from eventsourcing.utils import get_topic, resolve_topic

from agenttasks.bus.consumers import Delivery
from agenttasks.bus.event_data import TaskRetried, data_of
from agenttasks.bus.messages import TaskEvent, decode
from agenttasks.domain.task import Task
from agenttasks.workers.backlog import Job

_TASK_TOPIC = get_topic(Task)
# The payload carries U+FFFD where a stored string held NUL (bus_payloads.without_nul): such a
# payload is not an exact copy, so the task is loaded instead. JSON from msgspec is UTF-8, raw.
_REPLACEMENT = "\ufffd".encode()


class _CreatedFields(msgspec.Struct, forbid_unknown_fields=True):
    """Every field of Task.Created (v3). A field this does not know means a newer event whose
    copy would be incomplete: the payload is refused and the task loaded from the store."""

    title: str
    task_type: str
    task_config: dict[str, Any]
    priority: str
    created_by: str
    template_id: UUID | None
    template_version: int | None
    max_retries: int
    timeout_seconds: int
    webhook_url: str | None = None
    trace: str | None = None


class NotAJob(ValueError):
    """A message on a worker consumer that offers no attempt (it should never happen)."""


def job_from(delivery: Delivery) -> Job:
    """The job the message offers; NotAJob for anything else."""
    try:
        event = decode(delivery.data)
    except Exception as error:  # a foreign or corrupt message must not stop the worker
        raise NotAJob(f"undecodable message: {error}") from None
    if not isinstance(event, TaskEvent) or event.type not in ("created", "retried"):
        raise NotAJob(f"not a created/retried task event: {getattr(event, 'type', '?')}")
    attempt, ready_at = 1, 0.0
    if event.type == "retried":
        retried = data_of(event, TaskRetried)
        attempt = retried.attempt
        if retried.not_before is not None:
            ready_at = retried.not_before.timestamp()
    return Job(
        task_id=UUID(event.task_id),
        attempt=attempt,
        task_type=event.task_type,
        priority=event.priority,
        user=event.user,
        position=event.position,
        delivery=delivery,
        ready_at=ready_at,
        created=event if event.type == "created" else None,
    )


def task_from_created(job: Job) -> Task | None:
    """The task as its Created event builds it, from the job's created message; None if not exact.

    A worker starts attempt 1 from this copy instead of reading the task's events (the store
    still checks that the copy is its current state: TaskCommands.start_offered).
    """
    event = job.created
    if event is None or event.version != 1 or _REPLACEMENT in job.delivery.data:
        return None
    try:
        fields = msgspec.convert(event.data, _CreatedFields, strict=False)
        timestamp = _aware(event.timestamp)
        if not _DIRECT:
            return _by_the_library(job.task_id, timestamp, fields)
        # What Created.mutate does, without the event object (half the copy's CPU): the shell,
        # the library's base init, Task.__init__ with the event's fields it names (the trace is
        # not one), and Created.apply, which does nothing (_DIRECT checks each of these).
        task = Task.__new__(Task)
        task.__base_init__(job.task_id, 1, timestamp)
        Task.__init__(
            task,
            title=fields.title,
            task_type=fields.task_type,
            task_config=fields.task_config,
            priority=fields.priority,
            created_by=fields.created_by,
            template_id=fields.template_id,
            template_version=fields.template_version,
            max_retries=fields.max_retries,
            timeout_seconds=fields.timeout_seconds,
            webhook_url=fields.webhook_url,
        )
    except Exception:  # any doubt about the copy: the store's events decide
        return None
    return task


def _by_the_library(task_id: UUID, timestamp: datetime, fields: _CreatedFields) -> Task | None:
    """The copy as eventsourcing builds it: a Created event, then its mutate."""
    created = Task.Created(
        originator_id=task_id,
        originator_version=1,
        timestamp=timestamp,
        originator_topic=_TASK_TOPIC,
        **{name: getattr(fields, name) for name in fields.__struct_fields__},
    )
    task = created.mutate(None)
    return task if isinstance(task, Task) else None


# The fields task_from_created passes to Task.__init__ by name.
_INIT_FIELDS = frozenset(
    {
        "title",
        "task_type",
        "task_config",
        "priority",
        "created_by",
        "template_id",
        "template_version",
        "max_retries",
        "timeout_seconds",
        "webhook_url",
    }
)


def _direct_is_the_library() -> bool:
    """Whether the direct build is what Created.mutate does for Task in this library version.

    Created.mutate calls the base init with the event's id, version and timestamp, Task.__init__
    with the event's fields that it names (with `id` too if it names that), then Created.apply.
    Should any of that change (an apply, a new init argument, another base init), the copy is
    built by the library instead.
    """
    init = inspect.signature(Task.__init__).parameters
    return (
        Task.Created.mutate is CanInitAggregate.mutate
        and Task.Created.apply is CanMutateAggregate.apply
        and Task.__base_init__ is BaseAggregate.__base_init__
        and Task.__new__ is object.__new__
        and Task not in _init_mentions_id
        and set(init) - {"self"} == _INIT_FIELDS
        and set(_CreatedFields.__struct_fields__) >= _INIT_FIELDS
        and resolve_topic(_TASK_TOPIC) is Task
    )


_DIRECT = _direct_is_the_library()


def _aware(timestamp: datetime) -> datetime:
    if timestamp.tzinfo is None:
        raise ValueError("a stored timestamp is always timezone-aware")
    return timestamp
