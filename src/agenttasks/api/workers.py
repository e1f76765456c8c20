"""GET /api/v1/utils/workers/: the worker processes, the queues' backlog, the oldest pending task.

Admins only. Workers come from their heartbeat rows (workers/heartbeats.py), capped at
AGENTTASKS_WORKERS_LIST_MAX; the backlog from JetStream's counts of the work consumers; the
oldest pending task from the tasks read model. When NATS cannot be asked, the answer still
comes, with `backlog: null` and `backlog_error` saying so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime

import msgspec
from litestar import get
from litestar.exceptions import PermissionDeniedException

from agenttasks.api.deps import CurrentActor, Deps
from agenttasks.api.openapi import AUTHENTICATED, problems
from agenttasks.bus.consumers import BusUnavailable
from agenttasks.projections.worker_queries import QueueDepth, WorkerView


class QueueView(msgspec.Struct, kw_only=True):
    """One work queue: the tasks of a (type, priority) waiting in JetStream or held by workers."""

    task_type: str
    priority: str
    pending: int  # not yet delivered to any worker
    in_flight: int  # delivered and not acknowledged: in a worker's local backlog or running


class WorkersView(msgspec.Struct, kw_only=True):
    """The answer of GET /utils/workers/."""

    as_of: datetime
    workers: list[WorkerView]  # alive first, then lost, then stopped; latest heartbeat first
    truncated: bool  # more workers exist than `limit`: the counts cover all of them
    limit: int  # AGENTTASKS_WORKERS_LIST_MAX
    counts: dict[str, int]  # workers by state: alive, lost, stopped
    backlog: list[QueueView] | None  # None: NATS could not be asked (see backlog_error)
    backlog_error: str | None
    oldest_pending_age_seconds: float | None  # None: no task is pending


@get(
    "/api/v1/utils/workers/",
    tags=["workers"],
    responses=problems(*AUTHENTICATED, described={403: "Only admins see the workers"}),
)
async def workers_view(actor: CurrentActor, deps: Deps) -> WorkersView:
    """The workers (id, host, types, concurrency, running attempts, last heartbeat, state),
    the backlog per task type and priority, and the oldest pending task's age."""
    if not actor.is_admin:
        raise PermissionDeniedException("only admins see the workers and queues")
    queries = deps.workers
    limit = deps.workers_list_max
    (listed, truncated), counts, oldest, (backlog, error) = await asyncio.gather(
        queries.workers(limit),
        queries.counts(),
        queries.oldest_pending_age(),
        _backlog(queries.backlog()),
    )
    return WorkersView(
        as_of=datetime.now(UTC),
        workers=listed,
        truncated=truncated,
        limit=limit,
        counts=counts,
        backlog=backlog,
        backlog_error=error,
        oldest_pending_age_seconds=oldest,
    )


async def _backlog(
    reading: Awaitable[list[QueueDepth]],
) -> tuple[list[QueueView] | None, str | None]:
    try:
        depths = await reading
    except BusUnavailable:
        return None, "NATS could not be asked for the consumers' counts; try again shortly"
    return [
        QueueView(
            task_type=d.task_type, priority=d.priority, pending=d.pending, in_flight=d.in_flight
        )
        for d in depths
    ], None
