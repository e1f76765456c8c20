"""From a bus message to a Job: which attempt of which task a created/retried event offers."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.utils import get_topic

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
        created = Task.Created(
            originator_id=UUID(event.task_id),
            originator_version=1,
            timestamp=_aware(event.timestamp),
            originator_topic=_TASK_TOPIC,
            **{name: getattr(fields, name) for name in fields.__struct_fields__},
        )
        task = created.mutate(None)
    except Exception:  # any doubt about the copy: the store's events decide
        return None
    return task if isinstance(task, Task) else None


def _aware(timestamp: datetime) -> datetime:
    if timestamp.tzinfo is None:
        raise ValueError("a stored timestamp is always timezone-aware")
    return timestamp
