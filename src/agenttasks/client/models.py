"""What the API answers, as msgspec Structs the client decodes into.

The live updates are the bus's own `TaskEvent` (plain msgspec). The query views mirror the
API's (`projections.task_queries.TaskView`, `api.schemas.EventView`), which live next to
psycopg and eventsourcing; a contract test keeps these copies in step with them. Unknown fields
are ignored, so a server that adds one (additive changes only, docs/events.md) breaks nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from agenttasks.bus.messages import TaskEvent

FINISHED = frozenset({"completed", "failed", "cancelled"})  # statuses that end a task's stream


class Task(msgspec.Struct, kw_only=True):
    """A task as the API shows it."""

    id: UUID
    title: str
    task_type: str
    task_config: dict[str, Any]
    priority: str
    status: str
    progress: int
    result_data: dict[str, Any] | None
    error_message: str | None
    created_by: str
    template_id: UUID | None
    attempt: int
    max_retries: int
    timeout_seconds: int
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime
    error_kind: str | None = None  # why a failed task failed (timeout, invalid_input, ...)
    # What the task's model calls cost, every attempt (docs/cost.md): USD as a decimal string,
    # null when a call's price is unknown (`unpriced_calls` of them); tokens {prompt, ...}.
    cost_usd: str | None = "0"
    tokens: dict[str, int] = msgspec.field(default_factory=dict)
    model_calls: int = 0
    unpriced_calls: int = 0


class TaskPage(msgspec.Struct, kw_only=True):
    """One page of a task list."""

    count: int
    next: str | None
    previous: str | None
    results: list[Task]


class Update(msgspec.Struct, kw_only=True):
    """One step of a task's update history (the read model)."""

    position: int
    task_id: UUID
    version: int
    type: str
    update_type: str
    status: str
    progress: int
    message: str
    data: dict[str, Any]
    timestamp: datetime
    partial: dict[str, Any] | None = None  # a result's streamed piece {offset, text}


class StoredEvent(msgspec.Struct, kw_only=True):
    """One stored event of a task, from the event store itself (the audit trail)."""

    position: int
    version: int
    type: str
    timestamp: datetime
    data: dict[str, Any]


class Resync(msgspec.Struct, kw_only=True):
    """The stream skipped history up to `position` (too much to replay): read the current
    state from the query API; updates go on after `position`."""

    position: int
    detail: str = ""


class _Page(msgspec.Struct, kw_only=True):
    """A paged answer of anything (updates and events may come paged)."""

    next: str | None = None
    results: list[msgspec.Raw]


class Problem(msgspec.Struct, kw_only=True):
    """An RFC 9457 problem-details body."""

    status: int | None = None
    title: str | None = None
    detail: str | None = None
    type: str | None = None
    errors: list[Any] | None = None
    # A 402 (the user's budget is spent, docs/cost.md): which budget, and when it resets.
    budget: str | None = None
    budget_source: str | None = None
    spent_usd: str | None = None
    resets_at: str | None = None


Followed = TaskEvent | Resync

__all__ = [
    "FINISHED",
    "Followed",
    "Problem",
    "Resync",
    "StoredEvent",
    "Task",
    "TaskEvent",
    "TaskPage",
    "Update",
]
