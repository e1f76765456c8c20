"""instant: a test engine that does no work, for measuring the lifecycle itself (benchmarks)."""

from __future__ import annotations

from typing import Any

from agenttasks.workers.context import AgentContext


async def run(ctx: AgentContext) -> dict[str, Any]:
    return {"engine": "instant", "model": None, "usage": None, "note": "no work was done"}
