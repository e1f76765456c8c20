"""What several agents do alike: read their sources, ask the model, describe the engine."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from agenttasks.workers.call_budget import RecordedCall, Reservation
from agenttasks.workers.context import AgentContext
from agenttasks.workers.errors import AgentError
from agenttasks.workers.fetch import FetchError
from agenttasks.workers.metering import planned_call, recorded_call
from agenttasks.workers.offline.passages import Document

log = logging.getLogger(__name__)

MAX_MODEL_INPUT_CHARS = 48_000  # what one prompt carries of the sources (about 12k tokens)
# The offline engine on a text this short takes well under a millisecond (measured 0.7 ms at
# 1,000 chars, 4.8 ms at 4,000): cheaper on the event loop than a hop to a thread and back.
INLINE_CHARS = 1_000

T = TypeVar("T")


@dataclass
class Sources:
    """The texts an agent works from, and what the result says about where they came from."""

    documents: list[Document] = field(default_factory=list)
    described: list[dict[str, Any]] = field(default_factory=list)

    def text(self, limit: int = MAX_MODEL_INPUT_CHARS) -> str:
        joined = "\n\n".join(d.text for d in self.documents)
        return joined[:limit]


async def read_sources(
    ctx: AgentContext, content: str | None, urls: list[str], *, start: int, end: int
) -> Sources:
    """Fetches every URL, reporting progress from `start` to `end` percent.

    A URL that fails is an error update on the task, not the end of it: the task fails only
    when nothing usable is left, and then transiently if any failure might pass on retry.
    """
    sources = Sources()
    if content and content.strip():
        sources.documents.append(Document("content", content))
        sources.described.append({"url": None, "title": "Given content", "chars": len(content)})
    failures: list[FetchError] = []
    for index, url in enumerate(urls):
        await ctx.progress(start + (end - start) * index // max(1, len(urls)), f"Reading {url}")
        try:
            page = await ctx.fetcher.fetch(url)
        except FetchError as error:
            failures.append(error)
            await ctx.note(str(error), {"url": url, "kind": error.kind}, error=True)
            continue
        sources.documents.append(Document(page.url, page.text))
        sources.described.append({"url": page.url, "title": page.title, "chars": page.chars})
    if not sources.documents:
        transient = any(f.transient for f in failures)
        retry_after = max((f.retry_after or 0.0 for f in failures), default=0.0) or None
        raise AgentError(
            "no_usable_source",
            f"none of the {len(urls)} sources could be read",
            transient=transient,
            retry_after=retry_after,
        )
    return sources


async def ask_model(
    ctx: AgentContext,
    system: str,
    prompt: str,
    *,
    max_tokens: int,
    stream: bool = True,
) -> str:
    """The model's answer, streamed into partial results; its token usage added to the task's.

    `max_tokens` is the agent's default for the call; the task config's `max_tokens` replaces
    it, and AGENTTASKS_MAX_TOKENS caps both, so no call's output (and cost) is unbounded.
    """
    assert ctx.llm is not None
    ctx.limits.check_prompt(system, prompt)
    asked = ctx.config.get("max_tokens")
    tokens = ctx.limits.tokens_for(max_tokens, asked if isinstance(asked, int) else None)
    planned = planned_call(ctx, len(system) + len(prompt), tokens)
    # The budget may refuse the call (BudgetExceeded) or allow fewer tokens; never more.
    reservation = await ctx.budget.reserve(planned)
    if reservation.max_tokens is not None:
        tokens = max(1, min(tokens, reservation.max_tokens))
    started = time.monotonic()
    try:
        completion = await ctx.llm.complete(
            system, prompt, max_tokens=tokens, on_text=ctx.stream_text if stream else None
        )
    except BaseException:
        await _settle(ctx, reservation, None)
        raise
    latency_ms = int((time.monotonic() - started) * 1000)
    call = recorded_call(ctx.prices, ctx.llm.provider, planned, completion, latency_ms)
    try:
        await ctx.end_stream()
        await ctx.record_model_call(call)
    finally:
        # Even when the event cannot be stored (the attempt is over) the money is spent.
        await _settle(ctx, reservation, call)
    ctx.add_usage(completion.usage)
    return completion.text


async def _settle(ctx: AgentContext, reservation: Reservation, call: RecordedCall | None) -> None:
    try:
        await ctx.budget.settle(reservation, call)
    except Exception:  # the budget's own failure must not lose the task's result
        log.exception("could not settle the budget of a model call of task %s", ctx.task_id)


async def offline(function: Callable[..., T], chars: int, *args: Any) -> T:
    """Runs offline-engine work on `chars` characters: inline when small, else in a thread."""
    if chars <= INLINE_CHARS:
        return function(*args)
    return await asyncio.to_thread(function, *args)


def engine_fields(ctx: AgentContext) -> dict[str, Any]:
    """`engine`, `model` and `usage`: which engine produced the result, honestly."""
    if ctx.llm is None:
        ctx.offline_result = True  # recorded as a zero-cost call with the result
    return {"engine": ctx.engine, "model": ctx.model, "usage": ctx.usage()}
