"""The audit record of a deleted task: who deleted which task, when and why, and no content.

A `TaskDeletion` outlives the task's own events (those are removed from the store): it keeps
what the statistics read model shows for a task (owner, type, priority, final status, times,
token counts, its template), so replaying the store rebuilds the same figures after a purge.
It never holds a title, a config, a result or an error message. A storage contract: never
rename or retype these fields; new ones get defaults.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from agenttasks.domain.rules import FINISHED, check

REASONS = frozenset({"user", "admin", "retention"})
# The record's id follows from the task's: a second deletion of one task collides on save.
_NAMESPACE = UUID("5b0e3f3c-6a44-4d49-9a53-8f1f1a7c2d10")


def deletion_id(task_id: UUID) -> UUID:
    """The id of the deletion record of task `task_id`."""
    return uuid5(_NAMESPACE, str(task_id))


class TaskDeletion(Aggregate):
    """One task's deletion, kept as the audit trail and for the statistics."""

    class Created(Aggregate.Created):
        task_id: UUID
        actor: str
        reason: str
        owner: str
        task_type: str
        priority: str
        status: str
        created_at: datetime
        started_at: datetime | None
        finished_at: datetime | None
        prompt_tokens: int | None
        completion_tokens: int | None
        template_id: UUID | None
        template_version: int | None
        events: int
        # The sums of the task's model calls (every attempt), as the statistics keep them.
        cost_usd: str | None = None  # a decimal string: the priced calls
        model_calls: int = 0
        unpriced_calls: int = 0
        call_prompt_tokens: int = 0
        call_completion_tokens: int = 0
        cached_tokens: int = 0

    def __init__(
        self,
        task_id: UUID,
        actor: str,
        reason: str,
        owner: str,
        task_type: str,
        priority: str,
        status: str,
        created_at: datetime,
        started_at: datetime | None,
        finished_at: datetime | None,
        prompt_tokens: int | None,
        completion_tokens: int | None,
        template_id: UUID | None,
        template_version: int | None,
        events: int,
        cost_usd: str | None = None,
        model_calls: int = 0,
        unpriced_calls: int = 0,
        call_prompt_tokens: int = 0,
        call_completion_tokens: int = 0,
        cached_tokens: int = 0,
    ) -> None:
        self.task_id = task_id
        self.actor = actor
        self.reason = reason
        self.owner = owner
        self.task_type = task_type
        self.priority = priority
        self.status = status
        self.created_at = created_at
        self.started_at = started_at
        self.finished_at = finished_at
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.template_id = template_id
        self.template_version = template_version
        self.events = events
        self.cost_usd = cost_usd
        self.model_calls = model_calls
        self.unpriced_calls = unpriced_calls
        self.call_prompt_tokens = call_prompt_tokens
        self.call_completion_tokens = call_completion_tokens
        self.cached_tokens = cached_tokens

    @classmethod
    def record(
        cls,
        *,
        task_id: UUID,
        actor: str,
        reason: str,
        owner: str,
        task_type: str,
        priority: str,
        status: str,
        created_at: datetime,
        started_at: datetime | None,
        finished_at: datetime | None,
        prompt_tokens: int | None,
        completion_tokens: int | None,
        template_id: UUID | None,
        template_version: int | None,
        events: int,
        cost_usd: str | None = None,
        model_calls: int = 0,
        unpriced_calls: int = 0,
        call_prompt_tokens: int = 0,
        call_completion_tokens: int = 0,
        cached_tokens: int = 0,
    ) -> TaskDeletion:
        check(reason in REASONS, f"unknown deletion reason {reason!r}")
        check(status in FINISHED, f"only a finished task can be deleted; this one is {status}")
        return cls._create(
            cls.Created,
            id=deletion_id(task_id),
            task_id=task_id,
            actor=actor,
            reason=reason,
            owner=owner,
            task_type=task_type,
            priority=priority,
            status=status,
            created_at=created_at,
            started_at=started_at,
            finished_at=finished_at,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            template_id=template_id,
            template_version=template_version,
            events=events,
            cost_usd=cost_usd,
            model_calls=model_calls,
            unpriced_calls=unpriced_calls,
            call_prompt_tokens=call_prompt_tokens,
            call_completion_tokens=call_completion_tokens,
            cached_tokens=cached_tokens,
        )
