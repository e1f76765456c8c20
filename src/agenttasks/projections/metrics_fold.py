"""The metrics read model's fold: what each task event adds to the counters, pure.

`_Fold.apply` turns one task event (given the task's state before it) into additions to
`task_metrics` keys (`metric|task_type|label`) and the task's new state; projections/metrics.py
reads the states and writes the sums. Integers only, so any batching gives the same sums.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from agenttasks.bus.event_data import TaskFailed, TaskModelCalled, TaskRetried, data_of
from agenttasks.bus.messages import TaskEvent
from agenttasks.domain.rules import STATUSES, TASK_TYPES
from agenttasks.projections.statistics import tokens_of

# error_kind is written by workers and agents; a closed list keeps the label set bounded.
ERROR_KINDS = (
    "timeout", "network", "refused", "rate_limited", "server_error", "auth", "bad_request",
    "empty", "http_status", "content_type", "too_large", "input_too_large", "invalid_input",
    "invalid_output", "internal", "cancelled", "expired", "budget_exceeded", "worker_lost",
)  # fmt: skip
OTHER = "other"
# Upper bounds in seconds (the last bucket is +Inf). Changing them needs `replay metrics`.
QUEUE_WAIT_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
)  # fmt: skip
RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
COUNTERS = frozenset({
    "created", "completed", "failed", "cancelled", "retried", "wait_bucket", "wait_sum_us",
    "run_bucket", "run_sum_us", "prompt_tokens", "completion_tokens",
    "model_calls", "model_unpriced_calls", "model_prompt_tokens", "model_completion_tokens",
    "model_cost_nano_usd",
})  # fmt: skip
KINDS = ("created", "started", "completed", "failed", "cancelled", "retried", "model_call")
# A model's name as the server gave it (users never choose it): kept when it looks like a
# name, else "other". A server inventing names adds rows; the exposition shows the top ones.
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,79}")

_US = timedelta(microseconds=1)


def task_type_label(value: str) -> str:
    """The task type as a label: one of TASK_TYPES, else "other"."""
    return value if value in TASK_TYPES else OTHER


def error_kind_label(value: str) -> str:
    """The error kind as a label: one of ERROR_KINDS, else "other"."""
    return value if value in ERROR_KINDS else OTHER


def status_label(value: str) -> str:
    """The status as a label: one of STATUSES, else "other"."""
    return value if value in STATUSES else OTHER


def key_of(metric: str, task_type: str, label: str = "") -> str:
    """The `task_metrics` key of one series."""
    return f"{metric}|{task_type}|{label}"


def bucket_of(micros: int, bounds: tuple[float, ...]) -> int:
    """The index of the first bucket whose bound holds `micros` (len(bounds): +Inf)."""
    for index, bound in enumerate(bounds):
        if micros <= round(bound * 1_000_000):
            return index
    return len(bounds)


class State:
    """What the next event of a task needs, and the task's contribution so far."""

    __slots__ = ("contribution", "last_position", "pending_since", "started_at", "status", "type")

    def __init__(
        self,
        task_type: str,
        status: str,
        pending_since: datetime | None,
        started_at: datetime | None,
        contribution: dict[str, int],
        last_position: int,
    ) -> None:
        self.type = task_type
        self.status = status
        self.pending_since = pending_since
        self.started_at = started_at
        self.contribution = contribution
        self.last_position = last_position


class Fold:
    """The deltas of a run of events, and each touched task's new state."""

    def __init__(self, loaded: dict[str, State]) -> None:
        self.states = loaded
        self.touched: set[str] = set()
        self.deltas: dict[str, int] = {}

    def add(self, state: State, metric: str, label: str, amount: int = 1) -> None:
        key = key_of(metric, state.type, label)
        self.deltas[key] = self.deltas.get(key, 0) + amount
        total = state.contribution.get(key, 0) + amount
        if total:
            state.contribution[key] = total
        else:
            state.contribution.pop(key, None)

    def observe(self, state: State, name: str, began: datetime | None, ended: datetime) -> None:
        if began is None:
            return
        micros = max(0, (ended - began) // _US)
        bounds = QUEUE_WAIT_BUCKETS if name == "wait" else RUN_BUCKETS
        self.add(state, f"{name}_bucket", str(bucket_of(micros, bounds)))
        self.add(state, f"{name}_sum_us", "", micros)

    def model_call(self, state: State, call: TaskModelCalled) -> None:
        model = call.model if _MODEL_NAME.fullmatch(call.model) else OTHER
        self.add(state, "model_calls", model)
        for metric, tokens in (
            ("model_prompt_tokens", call.prompt_tokens),
            ("model_completion_tokens", call.completion_tokens),
        ):
            if tokens > 0:
                self.add(state, metric, model, tokens)
        cost = _nano_usd(call.cost_usd)
        if cost is None:
            self.add(state, "model_unpriced_calls", model)
        elif cost:
            self.add(state, "model_cost_nano_usd", model, cost)

    def apply(self, e: TaskEvent) -> None:
        state = self.states.get(e.task_id)
        if e.type == "created":
            if state is not None:
                return  # created already: nothing of this task's creation counts twice
            state = State(task_type_label(e.task_type), "", e.timestamp, None, {}, 0)
            self.states[e.task_id] = state
            self.add(state, "created", "")
        elif state is None or e.position <= state.last_position:
            return  # no creation seen (quarantined), or applied already
        elif e.type == "started":
            self.observe(state, "wait", state.pending_since, e.timestamp)
            state.pending_since, state.started_at = None, e.timestamp
        elif e.type == "completed":
            self.add(state, "completed", "")
            self.observe(state, "run", state.started_at, e.timestamp)
            prompt, completion = tokens_of(e.data.get("result_data"))
            if prompt:
                self.add(state, "prompt_tokens", "", prompt)
            if completion:
                self.add(state, "completion_tokens", "", completion)
        elif e.type == "failed":
            self.add(state, "failed", error_kind_label(data_of(e, TaskFailed).error_kind))
            if state.status == "running":
                self.observe(state, "run", state.started_at, e.timestamp)
        elif e.type == "cancelled":
            self.add(state, "cancelled", "")
        elif e.type == "model_call":
            self.model_call(state, data_of(e, TaskModelCalled))
        elif e.type == "retried":
            self.add(state, "retried", "")
            # A chosen backoff is not time spent waiting for a worker.
            not_before = data_of(e, TaskRetried).not_before
            state.pending_since = max(e.timestamp, not_before or e.timestamp)
            state.started_at = None
        status = status_label(e.status)
        if status != state.status:
            if state.status:
                self.add(state, "status", state.status, -1)
            self.add(state, "status", status)
            state.status = status
        state.last_position = e.position
        self.touched.add(e.task_id)


def _nano_usd(cost: str | None) -> int | None:
    """A call's cost in whole nano-dollars (integers sum the same in any order); None: unpriced."""
    if cost is None:
        return None
    try:
        value = Decimal(cost)
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0 or value > 10**6:
        return None
    return int((value * 10**9).to_integral_value())
