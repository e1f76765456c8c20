"""Expiry of a pending task: only a task still waiting for a worker, past its cutoff, ends so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agenttasks.domain.rules import RuleViolation
from agenttasks.domain.task import StaleAttempt, Task
from tests.unit.test_task_lifecycle import new_task

LATER = datetime.now(UTC) + timedelta(hours=1)


def test_a_pending_task_past_its_cutoff_fails_as_expired_and_is_not_retryable() -> None:
    task = new_task()
    task.expire(1, LATER, "no worker came")
    event = task.collect_events()[-1]
    assert isinstance(event, Task.Failed)
    assert (event.error_kind, event.error_message, event.retryable) == (
        "expired",
        "no worker came",
        False,
    )
    assert task.status == "failed"
    task.retry("alice")  # a person may still try again
    assert (task.status, task.attempt) == ("pending", 2)


def test_a_task_a_worker_started_is_not_expired() -> None:
    task = new_task()
    task.start(1, "worker-1")
    with pytest.raises(RuleViolation, match="cannot expire a running task"):
        task.expire(1, LATER, "no worker came")


def test_a_task_queued_after_the_cutoff_is_not_expired() -> None:
    task = new_task()
    with pytest.raises(RuleViolation, match="not been pending that long"):
        task.expire(1, task.created_on - timedelta(seconds=1), "no worker came")


def test_a_retry_waiting_out_its_backoff_counts_from_the_end_of_the_backoff() -> None:
    task = new_task()
    task.fail(1, "network", "down", retryable=True)
    not_before = datetime.now(UTC) + timedelta(minutes=5)
    task.retry("system", automatic=True, not_before=not_before)
    assert task.waiting_since == not_before
    with pytest.raises(RuleViolation, match="not been pending that long"):
        task.expire(2, not_before - timedelta(seconds=1), "no worker came")
    task.expire(2, not_before + timedelta(seconds=1), "no worker came")
    assert task.status == "failed"


def test_a_stale_attempt_is_not_expired() -> None:
    task = new_task()
    task.fail(1, "network", "down", retryable=True)
    task.retry("alice")
    with pytest.raises(StaleAttempt):
        task.expire(1, LATER, "no worker came")


@pytest.mark.parametrize("end", ["complete", "cancel"])
def test_a_finished_task_is_not_expired(end: str) -> None:
    task = new_task()
    if end == "complete":
        task.start(1, "worker-1")
        task.complete(1, {"summary": "done"})
    else:
        task.cancel("alice")
    with pytest.raises(RuleViolation):
        task.expire(1, LATER, "no worker came")
