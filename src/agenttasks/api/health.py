"""Liveness and readiness: no auth, so load balancers and people can ask."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from litestar import Response, get
from psycopg_pool import AsyncConnectionPool

from agenttasks import quarantine, relay_status
from agenttasks.api.deps import Deps, ReadyCheck
from agenttasks.api.errors import problem
from agenttasks.api.openapi import READY_RESPONSES
from agenttasks.api.schemas import Health, Readiness
from agenttasks.bus.connection import Bus
from agenttasks.projections.positions import ProjectionWatcher
from agenttasks.projections.selfcheck import HEALTH_SQL, summarise

CHECK_TIMEOUT_SECONDS = 2.0


@get("/health", tags=["health"])
async def health() -> Health:
    """The process is alive."""
    return Health(status="ok")


@get("/ready", tags=["health"], responses=READY_RESPONSES)
async def ready(deps: Deps) -> Response[Any]:
    """Postgres, NATS, relay progress, projector lag, quarantine: 200 when all fine, else 503."""
    results: dict[str, dict[str, Any]] = {}
    for name, check in deps.ready_checks.items():
        try:
            results[name] = await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
        except Exception as error:  # a failing dependency is a report, not a crash
            results[name] = {"ok": False, "error": str(error) or type(error).__name__}
    ok = all(result.get("ok", False) for result in results.values())
    if ok:
        return Response(Readiness(ready=True, checks=results))
    failing = ", ".join(name for name, result in results.items() if not result.get("ok", False))
    # A problem document like every other error, with the report beside its members.
    return problem(503, f"not ready: {failing}", ready=False, checks=results)


def readiness_checks(
    *,
    pool: AsyncConnectionPool,
    newest: Callable[[], int | None],
    watcher: ProjectionWatcher,
    read_models: Iterable[str],
    open_bus: Callable[[], Awaitable[Bus]],
    relay_stall_seconds: float,
) -> dict[str, ReadyCheck]:
    """Postgres, NATS, relay lag, projector lag, quarantine and read-model health, by name.

    `newest` reads the store's newest position (synchronous: run in a thread); `open_bus`
    opens a short-lived NATS connection (a probe, not the streams' connection).
    """
    names = tuple(read_models)

    async def postgres() -> dict[str, Any]:
        async with pool.connection() as connection:
            await connection.execute("SELECT 1")
        return {"ok": True}

    async def nats_and_relay() -> dict[str, Any]:
        bus = await open_bus()
        try:
            published, _ = await bus.last_published()
        finally:
            await bus.close()
        stored = await asyncio.to_thread(newest) or 0
        async with pool.connection() as connection:
            heartbeat = await relay_status.last_beat(connection)
        return relay_status.relay_health(
            stored=stored,
            published=published,
            heartbeat=heartbeat,
            stall_seconds=relay_stall_seconds,
        )

    async def quarantined() -> dict[str, Any]:
        # A report, not a failure: the pipeline goes on around a quarantined event, and
        # failing every replica's /ready over one event would take the whole service out.
        async with pool.connection() as connection:
            found = await connection.execute(quarantine.SUMMARY_SQL)
            count, position, seen = (await found.fetchone()) or (0, None, None)
        newest_seen = None if seen is None else seen.isoformat()
        return {"ok": True, "count": count, "newest_position": position, "newest_seen": newest_seen}

    async def read_model_health() -> dict[str, Any]:
        # What the projectors' self-checks found (projections/selfcheck.py): stalled, or rows
        # missing against the store.
        async with pool.connection() as connection:
            found = await connection.execute(HEALTH_SQL)
            return summarise(await found.fetchall())

    async def lag() -> dict[str, Any]:
        stored = await asyncio.to_thread(newest) or 0
        result: dict[str, Any] = {"ok": True, "stored": stored}
        for name in names:
            result[f"{name}_lag"] = max(0, stored - await watcher.position(name))
        return result

    return {
        "postgres": postgres,
        "nats": nats_and_relay,
        "projections": lag,
        "quarantine": quarantined,
        "read_models": read_model_health,
    }
