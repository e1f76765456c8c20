"""What each task event means to a person watching the task: the frontend's view of a fact.

Every task event carries enough to describe itself (status follows from its kind, and each event
records the progress at that moment), so the relay, the projectors and the live streams can
all describe an event without folding the task's history first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eventsourcing.domain import DomainEventProtocol

from agenttasks.domain.task import Task


@dataclass(frozen=True)
class TaskUpdate:
    """One step of a task as a frontend shows it."""

    kind: str  # created, started, progress, result, completed, failed, cancelled, retried, info
    update_type: str  # progress, status, result, error, info
    status: str
    progress: int
    message: str
    data: dict[str, Any]


# Event class -> the kind name used in subjects and payloads. A storage contract too:
# subscribers filter on these names.
KINDS: dict[type[Any], str] = {
    Task.Created: "created",
    Task.Started: "started",
    Task.Progressed: "progress",
    Task.ResultRecorded: "result",
    Task.Completed: "completed",
    Task.Failed: "failed",
    Task.Cancelled: "cancelled",
    Task.Retried: "retried",
    Task.Noted: "info",
    Task.ModelCalled: "model_call",
}


def describe(event: DomainEventProtocol[Any]) -> TaskUpdate:
    """The update a task event stands for."""
    kind = KINDS[type(event)]
    e: Any = event
    if kind == "created":
        return TaskUpdate(kind, "status", "pending", 0, f"Task created: {e.title}", {})
    if kind == "started":
        data = {"attempt": e.attempt, "worker_id": e.worker_id}
        return TaskUpdate(kind, "status", "running", 0, f"Started attempt {e.attempt}", data)
    if kind == "progress":
        return TaskUpdate(kind, "progress", "running", e.progress, e.message, {})
    if kind == "result":
        return TaskUpdate(kind, "result", "running", e.progress, e.message, e.data)
    if kind == "completed":
        return TaskUpdate(kind, "result", "completed", 100, e.message, e.result_data)
    if kind == "failed":
        data = {"error_kind": e.error_kind, "retryable": e.retryable, "attempt": e.attempt}
        return TaskUpdate(kind, "error", "failed", e.progress, e.error_message, data)
    if kind == "cancelled":
        return TaskUpdate(kind, "status", "cancelled", e.progress, e.reason, {"by": e.by})
    if kind == "retried":
        not_before = e.not_before.isoformat() if e.not_before else None
        data = {"attempt": e.attempt, "automatic": e.automatic, "not_before": not_before}
        return TaskUpdate(kind, "status", "pending", 0, e.reason, data)
    if kind == "model_call":
        return TaskUpdate(kind, "info", "running", e.progress, _call_message(e), _call_data(e))
    update_type = "error" if e.level == "error" else "info"
    return TaskUpdate(kind, update_type, "running", e.progress, e.message, e.data)


def _call_message(e: Any) -> str:
    tokens = e.prompt_tokens + e.completion_tokens
    cost = "cost unknown" if e.cost_usd is None else f"${e.cost_usd}"
    if e.price_source == "offline engine":
        cost = "offline engine, no cost"
    return f"Model call {e.step}: {e.model}, {tokens:,} tokens, {cost}"


def _call_data(e: Any) -> dict[str, Any]:
    fields = (
        "attempt", "step", "model", "provider", "prompt_tokens", "completion_tokens",
        "cached_tokens", "usage", "latency_ms", "cost_usd", "price_source", "price_version",
    )  # fmt: skip
    return {name: getattr(e, name) for name in fields}
