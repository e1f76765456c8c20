"""content_generation: write a piece of the given type, length and tone, in Markdown."""

from __future__ import annotations

import asyncio
from typing import Any

from agenttasks.workers.agents.common import ask_model, engine_fields
from agenttasks.workers.context import AgentContext
from agenttasks.workers.offline.drafting import draft
from agenttasks.workers.offline.text import word_count

SYSTEM_PROMPT = "You are a careful writer. Answer in Markdown, starting with a '# ' title line."


async def run(ctx: AgentContext) -> dict[str, Any]:
    config = ctx.config
    topic, kind = config["topic"], config["content_type"]
    length, tone, keywords = int(config["length"]), config["tone"], list(config["keywords"])
    await ctx.progress(10, f"Writing a {kind.replace('_', ' ')} about {topic}")
    if ctx.llm is not None:
        prompt = (
            f"Write a {kind.replace('_', ' ')} about: {topic}\n"
            f"Length: about {length} words. Tone: {tone}.\n"
            + (f"Use these keywords: {', '.join(keywords)}\n" if keywords else "")
        )
        content = await ask_model(ctx, SYSTEM_PROMPT, prompt, max_tokens=length * 2 + 100)
        title, body = _split_title(content, topic)
    else:
        written = await asyncio.to_thread(draft, topic, kind, length, tone, keywords)
        title, body = written.title, written.content
    used = [k for k in keywords if k.lower() in body.lower()]
    return {
        "title": title,
        "content": body,
        "word_count": word_count(body),
        "keywords_used": used,
        **engine_fields(ctx),
    }


def _split_title(markdown: str, fallback: str) -> tuple[str, str]:
    first, _, _rest = markdown.strip().partition("\n")
    if first.startswith("#"):
        return first.lstrip("#").strip() or fallback, markdown.strip()
    return fallback, markdown.strip()
