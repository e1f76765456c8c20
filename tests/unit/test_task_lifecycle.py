"""The Task aggregate under any sequence of commands: its rules hold and replay is exact."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agenttasks.domain.rules import FINISHED, STATUSES, RuleViolation
from agenttasks.domain.task import StaleAttempt, Task
from agenttasks.domain.updates import KINDS, describe


def new_task(**overrides: Any) -> Task:
    values: dict[str, Any] = {
        "title": "Summarise the news",
        "task_type": "summary",
        "task_config": {"content": "text", "urls": [], "max_length": 200},
        "created_by": "alice",
        "max_retries": 2,
    }
    values.update(overrides)
    return Task.create(**values)


def replayed(events: list[Any]) -> Task:
    task = None
    for event in events:
        task = event.mutate(task)
    assert isinstance(task, Task)
    return task


def state_of(task: Task) -> dict[str, Any]:
    return {k: v for k, v in vars(task).items() if k != "_pending_events"}


class TaskLifecycle(RuleBasedStateMachine):
    """Random command sequences; a refused command must leave no trace."""

    def __init__(self) -> None:
        super().__init__()
        self.task = new_task()
        self.events: list[Any] = list(self.task.collect_events())
        self.progress_floor = 0
        self.ever_completed = False

    def attempt(self, offset: int) -> int:
        return max(1, self.task.attempt + offset)

    def run(self, command: Any) -> bool:
        before = state_of(self.task)
        try:
            command()
        except RuleViolation:
            assert state_of(self.task) == before
            assert self.task.collect_events() == []
            return False
        new_events = self.task.collect_events()
        assert len(new_events) == 1, "every accepted command triggers exactly one event"
        self.events.extend(new_events)
        return True

    @rule(offset=st.sampled_from([0, 0, 0, -1, 1]), worker=st.sampled_from(["w1", "w2"]))
    def start(self, offset: int, worker: str) -> None:
        if self.run(lambda: self.task.start(self.attempt(offset), worker)):
            self.progress_floor = 0

    @rule(offset=st.sampled_from([0, 0, -1]), progress=st.integers(-5, 105))
    def report_progress(self, offset: int, progress: int) -> None:
        accepted = self.run(
            lambda: self.task.report_progress(self.attempt(offset), progress, "working")
        )
        if accepted:
            assert 0 <= progress <= 100
            assert progress >= self.progress_floor
            self.progress_floor = progress

    @rule(offset=st.sampled_from([0, -1]))
    def record_result(self, offset: int) -> None:
        self.run(lambda: self.task.record_result(self.attempt(offset), {"text": "so far"}))

    @rule(offset=st.sampled_from([0, 0, -1]))
    def complete(self, offset: int) -> None:
        if self.run(lambda: self.task.complete(self.attempt(offset), {"summary": "done"})):
            self.ever_completed = True

    @rule(offset=st.sampled_from([0, -1]), retryable=st.booleans())
    def fail(self, offset: int, retryable: bool) -> None:
        self.run(lambda: self.task.fail(self.attempt(offset), "network", "boom", retryable))

    @rule(offset=st.sampled_from([0, 0, -1]), late=st.booleans())
    def expire(self, offset: int, late: bool) -> None:
        was = self.task.status
        cutoff = self.task.waiting_since + timedelta(seconds=1 if late else -1)
        if self.run(lambda: self.task.expire(self.attempt(offset), cutoff, "no worker came")):
            assert was == "pending"
            assert late
            assert (self.task.status, self.task.error_kind) == ("failed", "expired")

    @rule()
    def cancel(self) -> None:
        was = self.task.status
        accepted = self.run(lambda: self.task.cancel(by="alice"))
        assert accepted == (was not in FINISHED)

    @rule(automatic=st.booleans())
    def retry(self, automatic: bool) -> None:
        was, attempt = self.task.status, self.task.attempt
        if self.run(lambda: self.task.retry("alice", automatic=automatic)):
            assert was in ("failed", "cancelled")
            assert self.task.attempt == attempt + 1
            assert self.task.status == "pending"

    @rule(offset=st.sampled_from([0, -1]), error=st.booleans())
    def note(self, offset: int, error: bool) -> None:
        self.run(lambda: self.task.note(self.attempt(offset), "a source failed", error=error))

    @rule(
        offset=st.sampled_from([0, 0, -1]),
        tokens=st.integers(-2, 5000),
        cost=st.sampled_from([None, "0", "0.0003012", "1.5", "-1", "NaN", "x"]),
    )
    def record_model_call(self, offset: int, tokens: int, cost: str | None) -> None:
        spent, calls = self.task.spent_usd, self.task.model_calls
        accepted = self.run(
            lambda: self.task.record_model_call(
                self.attempt(offset), step=calls + 1, model="m", provider="p",
                prompt_tokens=tokens, completion_tokens=7, cached_tokens=min(tokens, 3),
                usage="reported", latency_ms=12, cost_usd=cost, price_source="test",
                price_version=None,
            )
        )  # fmt: skip
        if accepted:
            assert cost is not None or self.task.unpriced_calls > 0
            assert self.task.spent_usd == spent + Decimal(cost or 0)
            assert self.task.model_calls == calls + 1

    @invariant()
    def spending_is_never_negative(self) -> None:
        assert self.task.spent_usd >= 0
        assert min(self.task.prompt_tokens, self.task.cached_tokens) >= 0
        assert self.task.cached_tokens <= self.task.prompt_tokens

    @precondition(lambda self: self.task.status in FINISHED)
    @rule()
    def repeating_a_finishing_command_adds_nothing(self) -> None:
        assert not self.run(lambda: self.task.cancel(by="alice"))
        assert not self.run(lambda: self.task.complete(self.task.attempt, {}))

    @invariant()
    def progress_stays_in_range_and_status_is_known(self) -> None:
        assert 0 <= self.task.progress <= 100
        assert self.task.status in STATUSES

    @invariant()
    def a_completed_task_never_changes_again(self) -> None:
        if self.ever_completed:
            assert self.task.status == "completed"
            assert self.task.progress == 100

    @invariant()
    def automatic_retries_never_exceed_the_limit(self) -> None:
        assert self.task.automatic_retries <= self.task.max_retries

    @invariant()
    def replaying_the_events_rebuilds_the_same_state(self) -> None:
        assert state_of(replayed(self.events)) == state_of(self.task)

    @invariant()
    def every_event_describes_the_status_it_leads_to(self) -> None:
        last = describe(self.events[-1])
        assert last.status == self.task.status
        assert last.progress == self.task.progress or last.kind in ("cancelled", "failed")
        assert type(self.events[-1]) in KINDS


TestTaskLifecycle = TaskLifecycle.TestCase


def test_an_event_from_a_stale_attempt_is_refused_after_a_takeover() -> None:
    task = new_task()
    task.start(1, "w1")
    task.fail(1, "worker_lost", "worker stopped heartbeating", retryable=True)
    task.retry("system", automatic=True)
    task.start(2, "w2")
    with pytest.raises(StaleAttempt):
        task.report_progress(1, 50, "the old worker is late")
    with pytest.raises(StaleAttempt):
        task.complete(1, {"summary": "late"})
    task.complete(2, {"summary": "on time"})
    assert task.result_data == {"summary": "on time"}


def test_automatic_retries_stop_at_max_retries_but_a_person_may_still_retry() -> None:
    task = new_task(max_retries=1)
    task.start(1, "w")
    task.fail(1, "http_500", "upstream", retryable=True)
    task.retry("system", automatic=True)
    task.start(2, "w")
    task.fail(2, "http_500", "upstream", retryable=True)
    with pytest.raises(RuleViolation, match="no automatic retries left"):
        task.retry("system", automatic=True)
    task.retry("alice")
    assert (task.status, task.attempt) == ("pending", 3)


def test_a_pending_task_can_time_out_before_any_worker_starts_it() -> None:
    task = new_task()
    task.fail(1, "timeout", "no worker started it in time", retryable=False)
    assert task.status == "failed"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("title", "   ", "title must not be empty"),
        ("task_type", "poetry", "unknown task_type"),
        ("priority", "asap", "unknown priority"),
        ("max_retries", 11, "max_retries"),
        ("timeout_seconds", 0, "timeout_seconds"),
    ],
)
def test_creating_a_task_with_bad_values_is_refused(field: str, value: Any, message: str) -> None:
    with pytest.raises(RuleViolation, match=message):
        new_task(**{field: value})
