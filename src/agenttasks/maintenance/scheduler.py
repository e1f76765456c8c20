"""Jobs on intervals, one after another; a failing job is said once and the others go on."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import psycopg

from agenttasks.application.append_lock import AppendLockTimeout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Swept:
    """What one sweep of a job did: how many it handled, and whether its bound stopped it."""

    done: int
    more: bool = False


@dataclass(frozen=True)
class Job:
    """A named sweep and the seconds between two of its runs."""

    name: str
    every: float
    sweep: Callable[[], Awaitable[Swept]]


class Scheduler:
    """Runs each job when it is due; one that reached its bound runs again at once."""

    def __init__(self, jobs: Sequence[Job], clock: Callable[[], float] = time.monotonic) -> None:
        self.jobs = list(jobs)
        self._clock = clock
        self._due = dict.fromkeys((job.name for job in self.jobs), 0.0)  # all due on leading
        self._failures = dict.fromkeys((job.name for job in self.jobs), 0)
        self.runs = dict.fromkeys((job.name for job in self.jobs), 0)  # sweeps that went through

    def restart(self) -> None:
        """Makes every job due now (a new leadership starts with a full round)."""
        self._due = dict.fromkeys(self._due, 0.0)

    def seconds_to_next(self) -> float:
        """Seconds until the earliest job is due (0 if one is due now)."""
        if not self._due:
            return float("inf")
        return max(0.0, min(self._due.values()) - self._clock())

    async def run_due(
        self,
        stopping: Callable[[], bool] = lambda: False,
        *,
        before_each: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Runs every job that is due, in order, unless asked to stop in between.

        `before_each` is awaited before each job; what it raises ends the round (the leader's
        check that it still holds the lock).
        """
        for job in self.jobs:
            if stopping():
                return
            if self._due[job.name] > self._clock():
                continue
            if before_each is not None:
                await before_each()
            try:
                swept = await job.sweep()
            except Exception as error:
                self._failed(job, error)
                self._due[job.name] = self._clock() + job.every
                continue
            self._recovered(job)
            self.runs[job.name] += 1
            if swept.done:
                log.info("maintenance: %s handled %d", job.name, swept.done)
            self._due[job.name] = self._clock() + (0.0 if swept.more else job.every)

    def _failed(self, job: Job, error: Exception) -> None:
        # Said once per run of failures, not every interval: a database outage would otherwise
        # repeat the same line for as long as it lasts. A bug keeps its traceback.
        if self._failures[job.name] == 0:
            # A lock timeout on the events table is an operator's lock, not a bug (operations.md).
            expected = isinstance(error, psycopg.Error | OSError | AppendLockTimeout)
            log.warning(
                "maintenance: %s failed (%s); it runs again every %gs",
                job.name,
                _brief(error),
                job.every,
                exc_info=not expected,
            )
        self._failures[job.name] += 1

    def _recovered(self, job: Job) -> None:
        if self._failures[job.name]:
            log.warning(
                "maintenance: %s works again after %d failed runs",
                job.name,
                self._failures[job.name],
            )
        self._failures[job.name] = 0


def _brief(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
