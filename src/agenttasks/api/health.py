"""Liveness and readiness: no auth, so load balancers and people can ask."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Response, get

from agenttasks.api.deps import Deps
from agenttasks.api.errors import problem
from agenttasks.api.openapi import READY_RESPONSES
from agenttasks.api.schemas import Health, Readiness

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
