"""One agent per task type: `async run(ctx) -> result_data`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from agenttasks.workers.agents import analysis, content, custom, instant, research, summary
from agenttasks.workers.context import AgentContext

Agent = Callable[[AgentContext], Awaitable[dict[str, Any]]]

AGENTS: dict[str, Agent] = {
    "summary": summary.run,
    "research": research.run,
    "content_generation": content.run,
    "data_analysis": analysis.run,
    "custom": custom.run,
}


def agents_for(engine: str) -> dict[str, Agent]:
    """The real agents, or (engine "instant", for benchmarks) agents that do nothing."""
    if engine == "instant":
        return dict.fromkeys(AGENTS, instant.run)
    return dict(AGENTS)
