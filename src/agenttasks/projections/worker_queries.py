"""The Workers view's queries: worker heartbeats, the work consumers' backlog, the oldest pending.

Heartbeat rows are written by the workers themselves (workers/heartbeats.py), not projected
from events: they describe processes, not tasks. The backlog is JetStream's own count of each
work consumer; the oldest pending task comes from the tasks read model. The metrics gauges call
`queue_backlog` and `oldest_pending_age` too, so every replica reports the same figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from agenttasks.bus.connection import Bus
from agenttasks.domain.rules import TASK_TYPES
from agenttasks.workers.backlog import PRIORITY_ORDER
from agenttasks.workers.consumers import consumer_name

WORKER_STATES = ("alive", "lost", "stopped")


class RunningView(msgspec.Struct, kw_only=True):
    """An attempt a worker reported running at its last heartbeat."""

    task_id: UUID
    attempt: int
    started_at: datetime


class WorkerView(msgspec.Struct, kw_only=True):
    """One worker process as its last heartbeat described it."""

    id: str
    host: str
    pid: int
    task_types: list[str]
    concurrency: int
    state: str  # alive, lost (no beat for AGENTTASKS_WORKER_LOST_SECONDS), stopped (clean exit)
    started_at: datetime
    last_heartbeat: datetime
    seconds_since_heartbeat: float
    heartbeat_seconds: float  # the worker's own interval
    ended_at: datetime | None  # when it stopped or was found lost
    running: list[RunningView]


@dataclass(frozen=True)
class QueueDepth:
    """One work consumer's backlog: JetStream's counts for a (task type, priority)."""

    task_type: str
    priority: str
    pending: int  # not delivered to any worker yet
    in_flight: int  # delivered, not acknowledged: in a worker's local backlog or running


async def queue_backlog(bus: Bus) -> list[QueueDepth]:
    """Every (type, priority) work consumer's counts (0 for one not created yet)."""
    # The consumers' names are the workers' (workers/consumers.py): read there, never restated.
    pairs = [(t, p) for t in TASK_TYPES for p in PRIORITY_ORDER]
    counts = await bus.consumer_counts([consumer_name(t, p) for t, p in pairs])
    depths = []
    for task_type, priority in pairs:
        found = counts.get(consumer_name(task_type, priority))
        depths.append(
            QueueDepth(
                task_type,
                priority,
                found.pending if found else 0,
                found.ack_pending if found else 0,
            )
        )
    return depths


# A pending row changes only when its task is created or retried (pending_queries.py), so
# `updated_at` is when it was queued: a task created long ago and retried now has just begun
# to wait (from `created_at`, every retry of an old task looked like a backlog).
_OLDEST_PENDING = """
SELECT extract(epoch FROM now() - min(updated_at))::float8 FROM tasks WHERE status = 'pending'
"""


async def oldest_pending_age(pool: AsyncConnectionPool[Any]) -> float | None:
    """Seconds the longest-waiting pending task has waited since it was queued; None: none."""
    async with pool.connection() as connection:
        row = await (await connection.execute(_OLDEST_PENDING)).fetchone()
    return None if row is None or row[0] is None else max(0.0, float(row[0]))


_WORKERS = """
WITH w AS (
    SELECT *, CASE WHEN state = 'alive' AND last_heartbeat < now() - make_interval(secs => %(lost)s)
                   THEN 'lost' ELSE state END AS shown
      FROM worker_heartbeats
)
SELECT worker_id, host, pid, task_types, concurrency, shown AS state, started_at,
       last_heartbeat, extract(epoch FROM now() - last_heartbeat)::float8 AS since,
       heartbeat_seconds, ended_at, running
  FROM w
 ORDER BY shown = 'alive' DESC, shown = 'lost' DESC, last_heartbeat DESC, worker_id
 LIMIT %(limit)s
"""
_COUNTS = """
SELECT CASE WHEN state = 'alive' AND last_heartbeat < now() - make_interval(secs => %s)
            THEN 'lost' ELSE state END, count(*)
  FROM worker_heartbeats GROUP BY 1
"""


class WorkerQueries:
    """The Workers view's reads: `worker_heartbeats` (capped), the backlog, the oldest pending."""

    def __init__(
        self, pool: AsyncConnectionPool[Any], bus: Bus, *, lost_after_seconds: float
    ) -> None:
        self.pool = pool
        self.bus = bus
        self.lost_after_seconds = lost_after_seconds  # an alive row silent this long shows lost

    async def backlog(self) -> list[QueueDepth]:
        """Every work consumer's counts (BusUnavailable: NATS cannot be asked)."""
        return await queue_backlog(self.bus)

    async def oldest_pending_age(self) -> float | None:
        """Seconds the longest-waiting pending task has waited since queued; None: none."""
        return await oldest_pending_age(self.pool)

    async def workers(self, limit: int) -> tuple[list[WorkerView], bool]:
        """Up to `limit` workers (alive, then lost, then stopped; latest beat first), and
        whether more were left out."""
        params = {"lost": self.lost_after_seconds, "limit": limit + 1}
        async with (
            self.pool.connection() as connection,
            connection.cursor(row_factory=dict_row) as cursor,
        ):
            await cursor.execute(_WORKERS, params)
            rows = await cursor.fetchall()
        return [_view(row) for row in rows[:limit]], len(rows) > limit

    async def counts(self) -> dict[str, int]:
        """How many workers are alive, lost and stopped."""
        async with self.pool.connection() as connection:
            cursor = await connection.execute(_COUNTS, (self.lost_after_seconds,))
            found = {state: int(n) for state, n in await cursor.fetchall()}
        return {state: found.get(state, 0) for state in WORKER_STATES}


def _view(row: dict[str, Any]) -> WorkerView:
    running = row["running"] if isinstance(row["running"], list) else []
    return WorkerView(
        id=row["worker_id"],
        host=row["host"],
        pid=row["pid"],
        task_types=list(row["task_types"]),
        concurrency=row["concurrency"],
        state=row["state"],
        started_at=row["started_at"],
        last_heartbeat=row["last_heartbeat"],
        seconds_since_heartbeat=max(0.0, float(row["since"])),
        heartbeat_seconds=float(row["heartbeat_seconds"]),
        ended_at=row["ended_at"],
        running=[msgspec.convert(item, RunningView) for item in running],
    )
