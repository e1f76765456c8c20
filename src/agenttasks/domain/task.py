"""The Task aggregate: a unit of agent work and every transition it goes through.

Status machine: pending -> running -> completed | failed | cancelled, and failed or cancelled ->
pending again on retry (a new attempt). Every event is a stored fact, so the classes and their
fields are a storage contract: never rename or retype them; new fields get defaults.
"""

from __future__ import annotations

from contextvars import ContextVar
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from agenttasks.domain.rules import (
    FINISHED,
    PRIORITIES,
    TASK_TYPES,
    RuleViolation,
    check,
)

# The W3C `traceparent` of the command under way, set by the application around each command
# (application/tasks.py): every event the command triggers records it in its `trace` field, so
# one task's log lines and spans join up across processes (docs/events.md, "Traces").
command_trace: ContextVar[str | None] = ContextVar("command_trace", default=None)


def _trace_v2(state: dict[str, Any]) -> None:
    state["trace"] = None  # stored before traces were recorded


class Task(Aggregate):
    """A task an agent works on, with its attempts, progress and outcome."""

    class Created(Aggregate.Created):
        class_version = 3

        title: str
        task_type: str
        task_config: dict[str, Any]
        priority: str
        created_by: str
        template_id: UUID | None
        template_version: int | None
        max_retries: int
        timeout_seconds: int
        # v2: where the deliverer posts the task's end (docs/webhooks.md); None: nowhere.
        webhook_url: str | None = None
        # v3 (on every task event): the traceparent of the command that caused it; None: none.
        trace: str | None = None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["webhook_url"] = None

        upcast_v2_v3 = staticmethod(_trace_v2)

    class Started(Aggregate.Event):
        class_version = 2

        attempt: int
        worker_id: str
        trace: str | None = None  # v2
        upcast_v1_v2 = staticmethod(_trace_v2)

        def apply(self, task: Task) -> None:
            task.status = "running"
            task.started_at = self.timestamp
            task.worker_id = self.worker_id
            task.progress = 0

    class Progressed(Aggregate.Event):
        class_version = 2

        attempt: int
        progress: int
        message: str
        trace: str | None = None  # v2
        upcast_v1_v2 = staticmethod(_trace_v2)

        def apply(self, task: Task) -> None:
            task.progress = self.progress

    class ResultRecorded(Aggregate.Event):
        """A partial result while the agent streams (e.g. the text so far)."""

        class_version = 3

        attempt: int
        data: dict[str, Any]
        message: str
        progress: int
        # v2: the streamed piece `{offset, text}` also stands here, flat, so that readers need
        # not know it nests in `data` (where it stays, for the payloads' existing readers).
        partial: dict[str, Any] | None = None
        trace: str | None = None  # v3

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["partial"] = streamed_piece(state["data"])

        upcast_v2_v3 = staticmethod(_trace_v2)

    class Completed(Aggregate.Event):
        class_version = 2

        attempt: int
        result_data: dict[str, Any]
        message: str
        trace: str | None = None  # v2
        upcast_v1_v2 = staticmethod(_trace_v2)

        def apply(self, task: Task) -> None:
            task.status = "completed"
            task.progress = 100
            task.result_data = self.result_data
            task.completed_at = self.timestamp

    class Failed(Aggregate.Event):
        class_version = 2

        attempt: int
        error_kind: str
        error_message: str
        retryable: bool
        progress: int
        trace: str | None = None  # v2
        upcast_v1_v2 = staticmethod(_trace_v2)

        def apply(self, task: Task) -> None:
            task.status = "failed"
            task.error_message = self.error_message
            task.error_kind = self.error_kind
            task.completed_at = self.timestamp

    class Cancelled(Aggregate.Event):
        class_version = 2

        attempt: int
        by: str
        reason: str
        progress: int
        trace: str | None = None  # v2
        upcast_v1_v2 = staticmethod(_trace_v2)

        def apply(self, task: Task) -> None:
            task.status = "cancelled"
            task.completed_at = self.timestamp

    class Retried(Aggregate.Event):
        class_version = 2

        attempt: int  # the new attempt's number
        by: str
        automatic: bool
        reason: str
        not_before: datetime | None  # automatic retries wait out their backoff
        trace: str | None = None  # v2
        upcast_v1_v2 = staticmethod(_trace_v2)

        def apply(self, task: Task) -> None:
            task.status = "pending"
            task.attempt = self.attempt
            task.progress = 0
            task.result_data = None
            task.error_message = None
            task.error_kind = None
            task.started_at = None
            task.completed_at = None
            task.worker_id = None
            task.not_before = self.not_before
            if self.automatic:
                task.automatic_retries += 1

    class Noted(Aggregate.Event):
        """Information or a non-fatal error (e.g. one source failed) during an attempt."""

        class_version = 2

        attempt: int
        level: str  # "info" | "error"
        message: str
        data: dict[str, Any]
        progress: int
        trace: str | None = None  # v2
        upcast_v1_v2 = staticmethod(_trace_v2)

    class ModelCalled(Aggregate.Event):
        """One model call of an attempt: what it used and cost (docs/cost.md)."""

        attempt: int
        step: int  # the call's number within its attempt, from 1
        model: str  # as the server named it
        provider: str  # the base URL's host; "offline" for the offline engine
        prompt_tokens: int  # cached ones included, as OpenAI counts
        completion_tokens: int
        cached_tokens: int
        usage: str  # reported | missing | invalid | capped
        latency_ms: int
        cost_usd: str | None  # a decimal string; None: unknown (no price, or no usage)
        price_source: str  # AGENTTASKS_PRICES | genai-prices | offline engine | unknown
        price_version: str | None
        progress: int
        trace: str | None = None  # the W3C traceparent of the command that stored it

        def apply(self, task: Task) -> None:
            task.model_calls += 1
            task.prompt_tokens += self.prompt_tokens
            task.completion_tokens += self.completion_tokens
            task.cached_tokens += self.cached_tokens
            if self.cost_usd is None:
                task.unpriced_calls += 1
            else:
                task.spent_usd += Decimal(self.cost_usd)

    def __init__(
        self,
        title: str,
        task_type: str,
        task_config: dict[str, Any],
        priority: str,
        created_by: str,
        template_id: UUID | None,
        template_version: int | None,
        max_retries: int,
        timeout_seconds: int,
        webhook_url: str | None = None,
    ) -> None:
        self.title = title
        self.task_type = task_type
        self.task_config = task_config
        self.priority = priority
        self.created_by = created_by
        self.template_id = template_id
        self.template_version = template_version
        self.max_retries = max_retries
        self.timeout_seconds = timeout_seconds
        self.webhook_url = webhook_url
        self.status = "pending"
        self.progress = 0
        self.attempt = 1
        self.automatic_retries = 0
        self.result_data: dict[str, Any] | None = None
        self.error_message: str | None = None
        self.error_kind: str | None = None
        self.worker_id: str | None = None
        self.started_at: datetime | None = None
        self.completed_at: datetime | None = None
        self.not_before: datetime | None = None
        # What the task's model calls used, every attempt (Task.ModelCalled).
        self.model_calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cached_tokens = 0
        self.unpriced_calls = 0
        self.spent_usd = Decimal(0)

    @classmethod
    def create(
        cls,
        *,
        title: str,
        task_type: str,
        task_config: dict[str, Any],
        created_by: str,
        priority: str = "normal",
        template_id: UUID | None = None,
        template_version: int | None = None,
        max_retries: int = 3,
        timeout_seconds: int = 7200,
        task_id: UUID | None = None,
        webhook_url: str | None = None,
    ) -> Task:
        check(bool(title.strip()), "title must not be empty")
        check(task_type in TASK_TYPES, f"unknown task_type {task_type!r}")
        check(priority in PRIORITIES, f"unknown priority {priority!r}")
        check(0 <= max_retries <= 10, "max_retries must be between 0 and 10")
        check(1 <= timeout_seconds <= 86_400, "timeout_seconds must be between 1 and 86400")
        return cls._create(
            cls.Created,
            id=task_id,
            title=title,
            task_type=task_type,
            task_config=task_config,
            priority=priority,
            created_by=created_by,
            template_id=template_id,
            template_version=template_version,
            max_retries=max_retries,
            timeout_seconds=timeout_seconds,
            webhook_url=webhook_url,
            trace=command_trace.get(),
        )

    def trigger_event(self, event_class: Any, **kwargs: Any) -> None:
        # Like the timestamp, the trace comes from the moment of the command, not its caller.
        if "trace" in event_class.__dataclass_fields__:
            kwargs.setdefault("trace", command_trace.get())
        super().trigger_event(event_class, **kwargs)

    # Commands. Each checks its guards, then triggers exactly one event.

    def start(self, attempt: int, worker_id: str) -> None:
        self._check_current(attempt)
        check(self.status == "pending", f"cannot start a {self.status} task")
        self.trigger_event(self.Started, attempt=attempt, worker_id=worker_id)

    def report_progress(self, attempt: int, progress: int, message: str) -> None:
        self._check_running(attempt)
        check(0 <= progress <= 100, "progress must be between 0 and 100")
        check(progress >= self.progress, f"progress cannot go down ({self.progress} -> {progress})")
        self.trigger_event(self.Progressed, attempt=attempt, progress=progress, message=message)

    def record_result(self, attempt: int, data: dict[str, Any], message: str = "") -> None:
        self._check_running(attempt)
        self.trigger_event(
            self.ResultRecorded,
            attempt=attempt,
            data=data,
            message=message or "Partial result",
            progress=self.progress,
            partial=streamed_piece(data),
        )

    def complete(self, attempt: int, result_data: dict[str, Any], message: str = "") -> None:
        self._check_running(attempt)
        self.trigger_event(
            self.Completed, attempt=attempt, result_data=result_data, message=message or "Completed"
        )

    def fail(self, attempt: int, error_kind: str, error_message: str, retryable: bool) -> None:
        """Fails the attempt. A pending task can fail too (it timed out before a worker came)."""
        self._check_current(attempt)
        check(self.status in ("pending", "running"), f"cannot fail a {self.status} task")
        self.trigger_event(
            self.Failed,
            attempt=attempt,
            error_kind=error_kind,
            error_message=error_message,
            retryable=retryable,
            progress=self.progress,
        )

    def expire(self, attempt: int, cutoff: datetime, message: str) -> None:
        """Fails a task still pending since before `cutoff`: no worker took it in time."""
        self._check_current(attempt)
        # Fenced against a worker starting it at the same moment: a started task is not expired.
        check(self.status == "pending", f"cannot expire a {self.status} task")
        check(self.waiting_since < cutoff, "the task has not been pending that long")
        self.trigger_event(
            self.Failed,
            attempt=attempt,
            error_kind="expired",
            error_message=message,
            retryable=False,
            progress=self.progress,
        )

    def cancel(self, by: str, reason: str = "") -> None:
        check(self.status not in FINISHED, f"cannot cancel a {self.status} task")
        self.trigger_event(
            self.Cancelled,
            attempt=self.attempt,
            by=by,
            reason=reason or "Cancelled",
            progress=self.progress,
        )

    def retry(
        self,
        by: str,
        *,
        automatic: bool = False,
        reason: str = "",
        not_before: datetime | None = None,
    ) -> None:
        check(
            self.status in ("failed", "cancelled"),
            f"only a failed or cancelled task can be retried; this one is {self.status}",
        )
        if automatic:
            check(self.automatic_retries < self.max_retries, "no automatic retries left")
        self.trigger_event(
            self.Retried,
            attempt=self.attempt + 1,
            by=by,
            automatic=automatic,
            reason=reason or ("Retrying automatically" if automatic else "Retried"),
            not_before=not_before,
        )

    def note(
        self, attempt: int, message: str, data: dict[str, Any] | None = None, *, error: bool = False
    ) -> None:
        self._check_running(attempt)
        self.trigger_event(
            self.Noted,
            attempt=attempt,
            level="error" if error else "info",
            message=message,
            data=data or {},
            progress=self.progress,
        )

    def record_model_call(
        self,
        attempt: int,
        *,
        step: int,
        model: str,
        provider: str,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int,
        usage: str,
        latency_ms: int,
        cost_usd: str | None,
        price_source: str,
        price_version: str | None,
    ) -> None:
        """Records a model call of the running attempt; a stale attempt's call is refused."""
        self._check_running(attempt)
        check(step >= 1, "a model call's step counts from 1")
        check(
            min(prompt_tokens, completion_tokens, cached_tokens, latency_ms) >= 0,
            "token counts and latency cannot be negative",
        )
        check(cached_tokens <= prompt_tokens, "cached tokens are part of the prompt tokens")
        check(usage in USAGE_STATES, f"unknown usage state {usage!r}")
        check(cost_usd is None or _is_amount(cost_usd), "cost_usd must be a non-negative amount")
        self.trigger_event(
            self.ModelCalled,
            attempt=attempt,
            step=step,
            model=model,
            provider=provider,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cached_tokens=cached_tokens,
            usage=usage,
            latency_ms=latency_ms,
            cost_usd=cost_usd,
            price_source=price_source,
            price_version=price_version,
            progress=self.progress,
        )

    # Guards.

    def _check_current(self, attempt: int) -> None:
        check(self.status != "completed", "a completed task never changes again")
        if attempt != self.attempt:
            raise StaleAttempt(attempt, self.attempt)

    def _check_running(self, attempt: int) -> None:
        self._check_current(attempt)
        check(self.status == "running", f"the task is {self.status}, not running")

    @property
    def waiting_since(self) -> datetime:
        """Since when a pending task has been waiting for a worker (after its retry's backoff)."""
        # A pending task's last event is its Created or Retried (nothing else happens while
        # it waits), so modified_on is when it was queued.
        since: datetime = self.modified_on
        return max(since, self.not_before) if self.not_before is not None else since

    @property
    def model_tokens(self) -> int:
        """Prompt and completion tokens of every model call of the task, every attempt."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost_usd(self) -> Decimal | None:
        """What the task's model calls cost, every attempt; None when one had no known price."""
        return None if self.unpriced_calls else self.spent_usd

    @property
    def created_at(self) -> datetime:
        return self.created_on

    @property
    def updated_at(self) -> datetime:
        return self.modified_on


# What a call's token counts are: as the server reported them, not reported at all, unusable
# (negative, not a number: recorded as 0), or over AGENTTASKS_MAX_REPORTED_TOKENS (capped).
USAGE_STATES = frozenset({"reported", "missing", "invalid", "capped"})


def _is_amount(text: Any) -> bool:
    try:
        amount = Decimal(text)
    except (ArithmeticError, TypeError, ValueError):
        return False
    return amount.is_finite() and amount >= 0


def streamed_piece(data: dict[str, Any]) -> dict[str, Any] | None:
    """The piece of streamed text a result carries (`data.partial`), or None."""
    piece = data.get("partial")
    return dict(piece) if isinstance(piece, dict) else None


class StaleAttempt(RuleViolation):
    """An event from an attempt that is no longer the task's current one."""

    def __init__(self, given: int, current: int) -> None:
        super().__init__(f"attempt {given} is stale; the task is on attempt {current}")
        self.given = given
        self.current = current
