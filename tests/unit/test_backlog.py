"""The worker's local queue: priority first, then fairness between users, then age."""

from __future__ import annotations

from collections import Counter
from uuid import uuid4

from agenttasks.workers.backlog import Backlog, Job


def job(
    user: str = "ann", priority: str = "normal", position: int = 1, ready_at: float = 0.0
) -> Job:
    return Job(uuid4(), 1, "summary", priority, user, position, delivery=None, ready_at=ready_at)  # type: ignore[arg-type]


def drain(backlog: Backlog, running: Counter[str] | None = None) -> list[Job]:
    taken = []
    while (next_job := backlog.take(running or Counter(), now=100.0)) is not None:
        taken.append(next_job)
    return taken


def test_more_urgent_jobs_start_first_whatever_their_age() -> None:
    backlog = Backlog()
    for position, priority in enumerate(["low", "normal", "high", "urgent"], 1):
        backlog.add(job(priority=priority, position=position), now=100.0)
    assert [j.priority for j in drain(backlog)] == ["urgent", "high", "normal", "low"]


def test_within_a_priority_the_oldest_job_starts_first() -> None:
    backlog = Backlog()
    for position in (3, 1, 2):
        backlog.add(job(position=position), now=100.0)
    assert [j.position for j in drain(backlog)] == [1, 2, 3]


def test_a_user_with_nothing_running_goes_before_a_user_with_a_thousand_queued() -> None:
    backlog = Backlog()
    for position in range(1, 1001):
        backlog.add(job(user="flood", position=position), now=100.0)
    backlog.add(job(user="single", position=1001), now=100.0)
    running = Counter({"flood": 1})  # the flood's first task already runs
    assert backlog.take(running, now=100.0).user == "single"  # type: ignore[union-attr]


def test_users_take_turns_when_both_have_many_queued() -> None:
    backlog = Backlog()
    for position in range(1, 7):
        backlog.add(job(user="a" if position <= 3 else "b", position=position), now=100.0)
    running: Counter[str] = Counter()
    order = []
    while (taken := backlog.take(running, now=100.0)) is not None:
        running[taken.user] += 1
        order.append(taken.user)
    assert order == ["a", "b", "a", "b", "a", "b"]


def test_the_per_user_limit_holds_back_a_user_at_the_limit() -> None:
    backlog = Backlog(per_user_limit=2)
    backlog.add(job(user="a", position=1), now=100.0)
    assert backlog.take(Counter({"a": 2}), now=100.0) is None
    assert backlog.take(Counter({"a": 1}), now=100.0) is not None


def test_a_job_waiting_out_its_backoff_starts_only_when_due() -> None:
    backlog = Backlog()
    backlog.add(job(position=1, ready_at=150.0), now=100.0)
    assert backlog.take(Counter(), now=149.0) is None
    assert backlog.next_ready_at() == 150.0
    assert backlog.take(Counter(), now=150.0) is not None


def test_a_removed_job_never_starts_and_a_newer_offer_replaces_an_older_one() -> None:
    backlog = Backlog()
    cancelled, kept = job(position=1), job(position=2)
    backlog.add(cancelled, now=100.0)
    backlog.add(kept, now=100.0)
    assert backlog.remove(cancelled.task_id) is cancelled
    newer = Job(kept.task_id, 2, "summary", "normal", "ann", 3, delivery=None)  # type: ignore[arg-type]
    assert backlog.add(newer, now=100.0) is kept
    assert drain(backlog) == [newer]
    assert len(backlog) == 0


def test_an_older_offer_arriving_after_a_newer_one_is_set_aside_not_kept() -> None:
    # A redelivered `created` (attempt 1) arriving while attempt 2's `retried` waits out its
    # backoff used to replace it: attempt 2's message was acked and the task stayed pending.
    backlog = Backlog()
    retried = job(position=7, ready_at=150.0)
    retried.attempt = 2
    assert backlog.add(retried, now=100.0) is None
    created = Job(retried.task_id, 1, "summary", "normal", "ann", 3, delivery=None)  # type: ignore[arg-type]
    assert backlog.add(created, now=100.0) is created
    assert drain(backlog) == []  # attempt 2 still waits for its backoff
    assert backlog.take(Counter(), now=151.0) is retried


def test_a_newer_offer_replaces_the_older_one() -> None:
    backlog = Backlog()
    created = job(position=3)
    backlog.add(created, now=100.0)
    retried = Job(created.task_id, 2, "summary", "normal", "ann", 7, delivery=None)  # type: ignore[arg-type]
    assert backlog.add(retried, now=100.0) is created
    assert drain(backlog) == [retried]
