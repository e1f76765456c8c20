"""From a bus message to a Job: which attempt of which task a created/retried event offers."""

from __future__ import annotations

from uuid import UUID

from agenttasks.bus.consumers import Delivery
from agenttasks.bus.event_data import TaskRetried, data_of
from agenttasks.bus.messages import TaskEvent, decode
from agenttasks.workers.backlog import Job


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
    )
