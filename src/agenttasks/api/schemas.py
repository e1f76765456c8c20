"""Request and response bodies: msgspec Structs on one base that refuses unknown fields."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from msgspec import Meta

from agenttasks.application.tasks import MAX_TITLE_CHARS
from agenttasks.projections.task_queries import TaskView, UpdateView

TaskType = Literal["summary", "research", "content_generation", "data_analysis", "custom"]
Priority = Literal["low", "normal", "high", "urgent"]
Status = Literal["pending", "running", "completed", "failed", "cancelled"]
MAX_POSITION = 10**18 - 1  # positions are bigints; a larger one is a client's mistake


class Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every request body: a misspelt field is an error, not silently ignored."""


class TaskCreate(Body):
    """POST /ai-tasks/."""

    title: Annotated[str, Meta(min_length=1, max_length=MAX_TITLE_CHARS)]
    task_type: TaskType
    task_config: dict[str, Any]
    priority: Priority = "normal"
    max_retries: Annotated[int, Meta(ge=0, le=10)] = 3
    timeout_seconds: Annotated[int, Meta(ge=1, le=86_400)] = 7200
    # Where the task's end is posted (docs/webhooks.md); AGENTTASKS_WEBHOOK_MAX_URL_CHARS caps it.
    webhook_url: Annotated[str, Meta(min_length=1, max_length=8192)] | None = None


class CancelRequest(Body):
    """POST /ai-tasks/{id}/cancel/ (the body is optional)."""

    reason: Annotated[str, Meta(max_length=500)] = ""


class ValidateConfigRequest(Body):
    """POST /validate-task-config/."""

    task_type: str
    task_config: Any
    template_id: UUID | None = None


class ValidateConfigResponse(msgspec.Struct):
    """Whether a config is valid for its type, and every reason it is not."""

    valid: bool
    errors: list[str]


class TaskPage(msgspec.Struct):
    """One page of tasks."""

    count: int
    next: str | None
    previous: str | None
    results: list[TaskView]


class EventView(msgspec.Struct):
    """One stored event of a task, for audit."""

    position: int
    version: int
    type: str
    timestamp: datetime
    data: dict[str, Any]


class UpdatePage(msgspec.Struct):
    """One page of a task's updates, oldest first."""

    count: int
    next: str | None
    previous: str | None
    results: list[UpdateView]


class EventPage(msgspec.Struct):
    """One page of a task's stored events, oldest first."""

    count: int
    next: str | None
    previous: str | None
    results: list[EventView]


class Health(msgspec.Struct):
    """GET /health."""

    status: str


class Readiness(msgspec.Struct):
    """GET /ready: each check's outcome."""

    ready: bool
    checks: dict[str, dict[str, Any]]
