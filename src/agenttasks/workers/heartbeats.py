"""Worker heartbeats: each worker process's row in `worker_heartbeats`, for the Workers view.

A worker upserts its row (who it is, what it serves, the attempts it runs: ids and times, no
user content) once per interval, not per task, and marks it `stopped` on a clean exit. A
worker that dies stops beating: the view shows it `lost` once its last beat is older than
LOST_AFTER_BEATS of its own intervals, and the maintenance role records that (`mark_lost`)
and later removes ended rows (`remove_lost`). Beats are best effort: a database outage costs
the view its freshness, never a task its run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from agenttasks.outage import Outage

log = logging.getLogger(__name__)

TABLE = "worker_heartbeats"
DDL = """CREATE TABLE IF NOT EXISTS worker_heartbeats (
    worker_id text PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    task_types text[] NOT NULL,
    concurrency integer NOT NULL,
    heartbeat_seconds real NOT NULL,
    started_at timestamptz NOT NULL,
    last_heartbeat timestamptz NOT NULL,
    state text NOT NULL,
    ended_at timestamptz,
    running jsonb NOT NULL DEFAULT '[]'
)"""
INDEX = """CREATE INDEX IF NOT EXISTS worker_heartbeats_state
    ON worker_heartbeats (state, last_heartbeat)"""
_DDL_LOCK = 0x61677474_68626174  # "agtthbat": concurrent CREATE ... IF NOT EXISTS collide
LOST_AFTER_BEATS = 3  # missed beats after which a worker counts as lost
MAX_REPORTED_RUNNING = 1000  # attempts one beat lists (concurrency is far lower in practice)

_BEAT = """
INSERT INTO worker_heartbeats AS w (worker_id, host, pid, task_types, concurrency,
    heartbeat_seconds, started_at, last_heartbeat, state, ended_at, running)
VALUES (%(id)s, %(host)s, %(pid)s, %(types)s, %(concurrency)s, %(every)s, %(started)s, now(),
    'alive', NULL, %(running)s)
ON CONFLICT (worker_id) DO UPDATE SET
    last_heartbeat = now(), state = 'alive', ended_at = NULL, running = EXCLUDED.running,
    task_types = EXCLUDED.task_types, concurrency = EXCLUDED.concurrency,
    heartbeat_seconds = EXCLUDED.heartbeat_seconds
"""
_STOPPED = """
UPDATE worker_heartbeats SET state = 'stopped', ended_at = now(), last_heartbeat = now(),
    running = '[]' WHERE worker_id = %s
"""
# Both take at most `limit` rows a statement (oldest first; rows a beat holds are skipped), so
# a table filled by thousands of short-lived workers never makes one long-locking statement.
_MARK_LOST = """
UPDATE worker_heartbeats SET state = 'lost', ended_at = now()
 WHERE worker_id IN (
    SELECT worker_id FROM worker_heartbeats
     WHERE state = 'alive' AND last_heartbeat < now() - %s
     ORDER BY last_heartbeat LIMIT %s FOR UPDATE SKIP LOCKED)
   AND state = 'alive'
"""
_REMOVE_ENDED = """
DELETE FROM worker_heartbeats
 WHERE worker_id IN (
    SELECT worker_id FROM worker_heartbeats
     WHERE state IN ('lost', 'stopped') AND ended_at < now() - %s
     ORDER BY ended_at LIMIT %s FOR UPDATE SKIP LOCKED)
   AND state IN ('lost', 'stopped')
"""


def ensure_table(cursor: psycopg.Cursor[Any]) -> None:
    """Creates the heartbeats table if needed (in the caller's transaction)."""
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
    cursor.execute(DDL)
    cursor.execute(INDEX)


@dataclass(frozen=True)
class RunningAttempt:
    """One attempt a worker runs: no title, config or user, only what identifies it."""

    task_id: UUID
    attempt: int
    started_at: datetime

    def as_json(self) -> dict[str, Any]:
        """The attempt as stored in the row's `running` list."""
        return {
            "task_id": str(self.task_id),
            "attempt": self.attempt,
            "started_at": self.started_at.isoformat(),
        }


@dataclass(frozen=True)
class WorkerIdentity:
    """What a worker process registers once: who it is and what it serves."""

    worker_id: str
    task_types: tuple[str, ...]
    concurrency: int
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class Presence(Protocol):
    """Where a worker says it is alive and what it runs."""

    async def run(self, running: Callable[[], Sequence[RunningAttempt]]) -> None:
        """Beats until cancelled, each time with what `running()` returns."""
        ...

    async def stopped(self) -> None:
        """Records a clean exit."""
        ...


class NoPresence:
    """No heartbeats (a worker built without a database pool, as some tests build one)."""

    async def run(self, running: Callable[[], Sequence[RunningAttempt]]) -> None:
        """Nothing to beat: waits to be cancelled."""
        await asyncio.Event().wait()

    async def stopped(self) -> None:
        """Nothing to record."""


class Heartbeats:
    """A worker's row in `worker_heartbeats`, upserted every `every` seconds."""

    def __init__(self, pool: AsyncConnectionPool[Any], me: WorkerIdentity, every: float) -> None:
        self._pool = pool
        self._me = me
        self._every = every
        self._outage = Outage("worker heartbeats (Postgres)", log)
        self.beats = 0  # for tests and logs

    async def ensure_table(self) -> None:
        """Creates the table if needed (a worker may start before any `migrate`)."""
        async with self._pool.connection() as connection, connection.cursor() as cursor:
            await cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
            await cursor.execute(DDL)
            await cursor.execute(INDEX)

    async def beat(self, running: Sequence[RunningAttempt]) -> None:
        """One upsert: alive now, running these attempts."""
        me = self._me
        params = {
            "id": me.worker_id,
            "host": me.host,
            "pid": me.pid,
            "types": list(me.task_types),
            "concurrency": me.concurrency,
            "every": self._every,
            "started": me.started_at,
            "running": Jsonb([a.as_json() for a in running[:MAX_REPORTED_RUNNING]]),
        }
        async with self._pool.connection() as connection:
            await connection.execute(_BEAT, params)
        self.beats += 1

    async def run(self, running: Callable[[], Sequence[RunningAttempt]]) -> None:
        """Beats until cancelled: at once, then every interval; failures are logged once."""
        while True:
            try:
                await self.beat(running())
                self._outage.restored()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._outage.failed(error)
            await asyncio.sleep(self._every)

    async def stopped(self) -> None:
        """Marks the row stopped (best effort: a worker that cannot say so is later lost)."""
        try:
            async with self._pool.connection() as connection:
                await connection.execute(_STOPPED, (self._me.worker_id,))
        except Exception as error:
            log.warning("could not record worker %s as stopped: %s", self._me.worker_id, error)


async def mark_lost(
    connection: psycopg.AsyncConnection[Any], older_than: timedelta, *, limit: int = 1000
) -> int:
    """Marks `lost` up to `limit` alive workers whose last beat is older than `older_than`."""
    cursor = await connection.execute(_MARK_LOST, (older_than, limit))
    if not connection.autocommit:
        await connection.commit()
    return cursor.rowcount


async def remove_lost(
    connection: psycopg.AsyncConnection[Any], older_than: timedelta, *, limit: int = 1000
) -> int:
    """Deletes up to `limit` lost or stopped workers' rows that ended over `older_than` ago."""
    cursor = await connection.execute(_REMOVE_ENDED, (older_than, limit))
    if not connection.autocommit:
        await connection.commit()
    return cursor.rowcount
