"""The maintenance jobs; each sweep is bounded, and the next one takes what is left.

- expiry: a task pending longer than AGENTTASKS_PENDING_TTL fails with error_kind `expired`
  (not retried), through the same command path as every transition;
- watchdog: the workers' timeout sweep, run here too, so a task whose worker vanished ends
  even when no worker is left (workers/watchdog.py);
- purge: the retention purge of finished tasks (retention.py's purger, on a schedule);
- liveness: workers whose heartbeat went silent are marked lost; long-ended rows removed;
- ledger: the spend ledger's rows of budget periods that ended (application/spend_ledger.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID

import psycopg

from agenttasks.application.spend_ledger import purge_ended
from agenttasks.application.tasks import ConcurrencyError, TaskCommands, TaskNotFound
from agenttasks.domain.rules import RuleViolation
from agenttasks.durations import format_duration
from agenttasks.maintenance.scheduler import Swept
from agenttasks.projections.pending_queries import StalePending
from agenttasks.workers import heartbeats
from agenttasks.workers.watchdog import Watchdog

if TYPE_CHECKING:
    from agenttasks.retention import Purger


class ExpirePending:
    """Fails tasks that waited for a worker longer than the TTL."""

    def __init__(
        self,
        commands: TaskCommands,
        stale: StalePending,
        ttl: timedelta,
        executor: Executor,
        *,
        batch: int,
    ) -> None:
        self._commands = commands
        self._stale = stale
        self._ttl = ttl
        self._executor = executor
        self._batch = batch
        # What the last sweep settled: the read model may still show those tasks pending (it
        # lags the store), and a sweep right after a full one would only be refused on them.
        self._settled: set[UUID] = set()
        self._message = (
            f"no worker started the task within {format_duration(ttl)} of it being queued "
            f"(AGENTTASKS_PENDING_TTL); is a worker running for its task type?"
        )

    async def sweep(self) -> Swept:
        """Expires up to `batch` tasks the read model shows pending for longer than the TTL."""
        found = await self._stale.find(self._ttl, self._batch, self._settled)
        # The read model may lag: the aggregate checks the age again, from its own events.
        cutoff = datetime.now(UTC) - self._ttl
        loop = asyncio.get_running_loop()
        # Concurrent commands share transactions (the group committer), so a full batch is a
        # handful of saves rather than one per task.
        outcomes = await asyncio.gather(
            *(
                loop.run_in_executor(self._executor, self._expire, task_id, attempt, cutoff)
                for task_id, attempt in found
            )
        )
        expired = sum(outcomes)
        self._settled = {task_id for task_id, _ in found}
        return Swept(expired, more=len(found) >= self._batch and expired > 0)

    def _expire(self, task_id: UUID, attempt: int, cutoff: datetime) -> bool:
        try:
            self._commands.expire(task_id, attempt, cutoff, self._message)
        except (RuleViolation, TaskNotFound):
            return False  # a worker started it, someone cancelled or retried it: not expired
        except ConcurrencyError:
            return False  # busy with other writers: the next sweep looks again
        return True


class TimeoutSweep:
    """The watchdog's sweep of attempts running past their timeout, on the leader."""

    def __init__(self, watchdog: Watchdog, *, batch: int) -> None:
        self._watchdog = watchdog
        self._batch = batch

    async def sweep(self) -> Swept:
        """Fails up to `batch` overdue attempts."""
        failed = await self._watchdog.fail_overdue()
        return Swept(failed, more=failed >= self._batch)


class RetentionPurge:
    """Purges finished tasks older than the retention, `batch` tasks a sweep."""

    def __init__(
        self,
        open_purger: Callable[[], AbstractContextManager[Purger]],
        retention: timedelta,
        *,
        batch: int,
    ) -> None:
        self._open = open_purger
        self._retention = retention
        self._batch = batch

    async def sweep(self) -> Swept:
        """One bounded call of the purger (in a thread: it is synchronous)."""
        return await asyncio.to_thread(self._purge)

    def _purge(self) -> Swept:
        cutoff = datetime.now(UTC) - self._retention
        with self._open() as purger:
            report = purger.purge_finished_before(
                cutoff, dry_run=False, actor="maintenance", limit=self._batch
            )
        return Swept(report.tasks, more=report.remaining)


class WorkerLiveness:
    """Marks silent workers lost and removes the rows of workers that ended long ago."""

    def __init__(
        self,
        database_url: str,
        *,
        lost_after: timedelta,
        forget_after: timedelta,
        batch: int = 1000,
    ):
        self._database_url = database_url
        self._lost_after = lost_after
        self._forget_after = forget_after
        self._batch = batch

    async def sweep(self) -> Swept:
        """One pass over the heartbeat table: at most `batch` rows marked and `batch` removed."""
        async with await psycopg.AsyncConnection.connect(
            self._database_url, autocommit=True
        ) as connection:
            try:
                lost = await heartbeats.mark_lost(connection, self._lost_after, limit=self._batch)
                removed = await heartbeats.remove_lost(
                    connection, self._forget_after, limit=self._batch
                )
            except psycopg.errors.UndefinedTable:
                return Swept(0)  # no worker has ever started here
        # A full batch may have left more: the scheduler runs the sweep again at once.
        return Swept(lost + removed, more=self._batch in (lost, removed))


class LedgerPurge:
    """Deletes the spend ledger's rows no budget period needs any more, `batch` rows a sweep."""

    def __init__(self, database_url: str, *, grace: timedelta, batch: int) -> None:
        self._database_url = database_url
        self._grace = grace  # the reservation lease: a call reserved in a period settles into it
        self._batch = batch

    async def sweep(self) -> Swept:
        """Rows of periods that ended over the grace ago, and reservations whose lease ended."""
        async with await psycopg.AsyncConnection.connect(
            self._database_url, autocommit=True
        ) as connection:
            try:
                purged, more = await purge_ended(connection, self._grace, self._batch)
            except psycopg.errors.UndefinedTable:
                return Swept(0)  # no API or worker has created the ledger here yet
        return Swept(purged, more=more)
