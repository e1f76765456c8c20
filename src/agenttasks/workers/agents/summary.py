"""summary: read the given text and pages, summarise within max_length words."""

from __future__ import annotations

from typing import Any

from agenttasks.workers.agents.common import ask_model, engine_fields, offline, read_sources
from agenttasks.workers.context import AgentContext
from agenttasks.workers.offline.summarize import summarize
from agenttasks.workers.offline.text import word_count

SYSTEM_PROMPT = (
    "You summarise documents faithfully. Use only facts from the given text. "
    "Answer with the summary only, in plain prose."
)


async def run(ctx: AgentContext) -> dict[str, Any]:
    config = ctx.config
    max_words = int(config["max_length"])
    sources = await read_sources(
        ctx, config.get("content"), config.get("urls", []), start=5, end=50
    )
    await ctx.progress(55, f"Summarising {len(sources.documents)} source(s)")
    if ctx.llm is not None:
        prompt = f"Summarise the following in at most {max_words} words.\n\n{sources.text()}"
        summary = await ask_model(ctx, SYSTEM_PROMPT, prompt, max_tokens=max_words * 2 + 50)
    else:
        text = sources.text(limit=2_000_000)
        summary = await offline(summarize, len(text), text, max_words)
    return {
        "summary": summary,
        "word_count": word_count(summary),
        "sources": sources.described,
        **engine_fields(ctx),
    }
