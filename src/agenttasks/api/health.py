"""Liveness and readiness: no auth, so load balancers and people can ask."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Response, get

from agenttasks.api.deps import Deps
from agenttasks.api.errors import PROBLEM_JSON
from agenttasks.api.schemas import Health, Readiness

CHECK_TIMEOUT_SECONDS = 2.0


@get("/health", tags=["health"])
async def health() -> Health:
    """The process is alive."""
    return Health(status="ok")


@get("/ready", tags=["health"])
async def ready(deps: Deps) -> Response[Readiness]:
    """Postgres, NATS, relay progress, projector lag, quarantine: 200 when all fine, else 503."""
    results: dict[str, dict[str, Any]] = {}
    for name, check in deps.ready_checks.items():
        try:
            results[name] = await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
        except Exception as error:  # a failing dependency is a report, not a crash
            results[name] = {"ok": False, "error": str(error) or type(error).__name__}
    ok = all(result.get("ok", False) for result in results.values())
    media_type = "application/json" if ok else PROBLEM_JSON
    return Response(
        Readiness(ready=ok, checks=results), status_code=200 if ok else 503, media_type=media_type
    )
