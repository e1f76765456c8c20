"""The `data` of each published event, typed: what projections, workers and clients read.

A bus payload's `data` holds the stored event's own fields as JSON (bus/messages.py). Reading
them as `data["progress"]` would keep working after a rename and fail only at run time, in
every read model at once; reading them through these structs names each field once, for mypy,
and `tests/contracts/test_event_data.py` checks every struct against the event class it
describes, so a renamed or retyped stored field fails the suite.

The structs accept unknown fields (events gain fields with defaults; an old reader must keep
working) and give every field added after an event was first stored a default, as the stored
events do.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

import msgspec

from agenttasks.bus.messages import TaskEvent, TemplateEvent

Data = TypeVar("Data", bound="EventData")


class EventData(msgspec.Struct, kw_only=True):
    """Base of the typed `data` of one kind of event."""


class TaskCreated(EventData):
    title: str
    task_type: str
    task_config: dict[str, Any]
    priority: str
    created_by: str
    max_retries: int
    timeout_seconds: int
    template_id: str | None = None
    template_version: int | None = None
    webhook_url: str | None = None


class TaskStarted(EventData):
    attempt: int
    worker_id: str


class TaskCompleted(EventData):
    attempt: int
    result_data: dict[str, Any]
    message: str = ""


class TaskFailed(EventData):
    attempt: int
    error_kind: str
    error_message: str
    retryable: bool
    progress: int


class TaskModelCalled(EventData):
    attempt: int
    step: int
    model: str
    provider: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    usage: str
    latency_ms: int
    cost_usd: str | None
    price_source: str
    price_version: str | None


class TaskRetried(EventData):
    attempt: int
    by: str
    automatic: bool
    reason: str
    not_before: datetime | None = None


class TemplateCreated(EventData):
    name: str
    description: str
    task_type: str
    default_config: dict[str, Any]
    config_schema: dict[str, Any]
    shared: bool
    owner: str


class TemplateRevised(EventData):
    revision: int
    by: str
    name: str
    description: str
    task_type: str
    default_config: dict[str, Any]
    config_schema: dict[str, Any]
    shared: bool


def data_of(event: TaskEvent | TemplateEvent, kind: type[Data]) -> Data:
    """`event.data` as `kind`; msgspec.ValidationError when it does not have that shape."""
    return msgspec.convert(event.data, type=kind, strict=False)
