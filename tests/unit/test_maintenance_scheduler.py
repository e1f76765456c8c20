"""The maintenance scheduler: jobs on their intervals, a bounded sweep again at once, a failing
job said once and the others unaffected."""

from __future__ import annotations

import logging

import psycopg
import pytest

from agenttasks.maintenance.scheduler import Job, Scheduler, Swept


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Sweeps:
    """A job's sweep that returns (or raises) what it is given, in turn, and counts its runs."""

    def __init__(self, *outcomes: Swept | Exception) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self) -> Swept:
        self.calls += 1
        outcome = self.outcomes.pop(0) if self.outcomes else Swept(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


async def test_each_job_runs_when_due_and_waits_its_interval() -> None:
    clock = Clock()
    fast, slow = Sweeps(), Sweeps()
    scheduler = Scheduler([Job("fast", 1, fast), Job("slow", 10, slow)], clock)
    await scheduler.run_due()
    assert (fast.calls, slow.calls) == (1, 1)  # all due as leadership starts
    assert scheduler.seconds_to_next() == 1
    clock.now += 1
    await scheduler.run_due()
    assert (fast.calls, slow.calls) == (2, 1)
    clock.now += 9
    await scheduler.run_due()
    assert (fast.calls, slow.calls) == (3, 2)
    scheduler.restart()
    await scheduler.run_due()
    assert (fast.calls, slow.calls) == (4, 3)


async def test_a_sweep_stopped_by_its_bound_runs_again_at_once() -> None:
    clock = Clock()
    sweeps = Sweeps(Swept(1000, more=True), Swept(3))
    scheduler = Scheduler([Job("expiry", 30, sweeps)], clock)
    await scheduler.run_due()
    assert scheduler.seconds_to_next() == 0
    await scheduler.run_due()
    assert sweeps.calls == 2
    assert scheduler.seconds_to_next() == 30


async def test_a_failing_job_is_logged_once_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    lost = psycopg.OperationalError("connection refused\n\tIs the server running?")
    broken, healthy = Sweeps(lost, lost, lost, Swept(2)), Sweeps()
    scheduler = Scheduler([Job("purge", 5, broken), Job("liveness", 5, healthy)], clock)
    with caplog.at_level(logging.INFO, logger="agenttasks.maintenance.scheduler"):
        for _ in range(4):
            await scheduler.run_due()
            clock.now += 5
    assert (broken.calls, healthy.calls) == (4, 4)
    assert scheduler.runs == {"purge": 1, "liveness": 4}
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "maintenance: purge failed (connection refused); it runs again every 5s",
        "maintenance: purge works again after 3 failed runs",
        "maintenance: purge handled 2",
    ]
    assert not caplog.records[0].exc_info  # an outage is no bug: no traceback


async def test_a_bug_in_a_job_keeps_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    scheduler = Scheduler([Job("expiry", 5, Sweeps(KeyError("attempt")))], Clock())
    with caplog.at_level(logging.WARNING, logger="agenttasks.maintenance.scheduler"):
        await scheduler.run_due()
    assert caplog.records[0].exc_info


async def test_a_stop_between_jobs_runs_no_further_job() -> None:
    first, second = Sweeps(), Sweeps()
    scheduler = Scheduler([Job("a", 1, first), Job("b", 1, second)], Clock())
    await scheduler.run_due(lambda: first.calls > 0)
    assert (first.calls, second.calls) == (1, 0)


async def test_what_the_check_before_each_job_raises_ends_the_round() -> None:
    first, second = Sweeps(), Sweeps()
    scheduler = Scheduler([Job("first", 1, first), Job("second", 1, second)], Clock())
    checks: list[str] = []

    async def lock_gone_after_the_first() -> None:
        checks.append("check")
        if len(checks) > 1:
            raise ConnectionError("the lock's session ended")

    with pytest.raises(ConnectionError):
        await scheduler.run_due(before_each=lock_gone_after_the_first)
    assert (first.calls, second.calls) == (1, 0)
    assert scheduler.seconds_to_next() == 0  # still due: the next leader runs it
