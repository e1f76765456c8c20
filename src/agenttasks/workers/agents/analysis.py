"""data_analysis: exact figures computed in code; a narrative only when a model is configured."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from agenttasks.workers.agents.common import ask_model, engine_fields
from agenttasks.workers.context import AgentContext
from agenttasks.workers.errors import AgentError
from agenttasks.workers.offline.statistics import DataError, analyse

SYSTEM_PROMPT = (
    "You explain statistics to a non-specialist in a short paragraph. Use only the figures "
    "given; do not invent numbers."
)


async def run(ctx: AgentContext) -> dict[str, Any]:
    config = ctx.config
    await ctx.progress(10, "Computing statistics")
    try:
        figures = await asyncio.to_thread(analyse, config["data"], config["analysis_type"])
    except DataError as error:
        # The schema admits the shape; only the analysis sees that nothing in it is numeric.
        raise AgentError("invalid_input", str(error)) from None
    result: dict[str, Any] = {**figures}
    if ctx.llm is not None:
        await ctx.progress(60, "Writing the narrative")
        prompt = (
            f"Analysis type: {config['analysis_type']}\nFigures:\n{json.dumps(figures)[:20_000]}"
        )
        result["narrative"] = await ask_model(ctx, SYSTEM_PROMPT, prompt, max_tokens=600)
    return {**result, **engine_fields(ctx)}
