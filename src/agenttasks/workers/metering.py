"""A model call's plan (for the budget, before it) and its record (the event, after it)."""

from __future__ import annotations

from agenttasks.application.prices import FILE_SOURCE, ModelPrice, PriceTable
from agenttasks.workers.call_budget import PlannedCall, RecordedCall
from agenttasks.workers.context import AgentContext
from agenttasks.workers.llm import Completion

UNKNOWN = "unknown"  # the price source of a call whose model has no price


def planned_call(ctx: AgentContext, prompt_chars: int, max_tokens: int) -> PlannedCall:
    """The call `ctx`'s agent is about to make, with the task's spending so far."""
    assert ctx.llm is not None
    return PlannedCall(
        task_id=ctx.task_id,
        attempt=ctx.attempt,
        user=ctx.user,
        task_type=ctx.task_type,
        template_id=ctx.template_id,
        task_config=ctx.config,
        model=ctx.llm.model,
        provider=ctx.llm.provider,
        max_tokens=max_tokens,
        prompt_chars=prompt_chars,
        price=ctx.prices.price_for(ctx.llm.model, _url(ctx.llm.provider)),
        task_spent_usd=ctx.spent_usd,
        task_tokens=ctx.model_tokens,
        task_unpriced_calls=ctx.unpriced_calls,
    )


def recorded_call(
    prices: PriceTable,
    provider: str,
    planned: PlannedCall,
    completion: Completion,
    latency_ms: int,
) -> RecordedCall:
    """What the call used and cost: null cost when its price or its usage is unknown."""
    price = _price(prices, provider, completion.model, planned)
    usage = completion.usage
    if usage is None or usage.status == "invalid":
        state = "missing" if usage is None else "invalid"
        prompt = completion_tokens = cached = 0
        cost = None  # tokens unknown: so is the cost (never 0 silently)
    else:
        state = usage.status
        prompt, completion_tokens, cached = (
            usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens
        )  # fmt: skip
        cost = price.cost(prompt, completion_tokens, cached) if price is not None else None
    return RecordedCall(
        model=completion.model,
        provider=provider,
        prompt_tokens=prompt,
        completion_tokens=completion_tokens,
        cached_tokens=cached,
        usage=state,
        latency_ms=max(0, latency_ms),
        cost_usd=cost,
        price_source=price.source if price is not None else UNKNOWN,
        price_version=price.version if price is not None else None,
    )


def _price(
    prices: PriceTable, provider: str, served: str, planned: PlannedCall
) -> ModelPrice | None:
    # The operator's price for the model asked for stands. Otherwise the server may name the
    # model it resolved an alias to ("gpt-4o" -> "gpt-4o-2024-08-06"): that name first.
    if planned.price is not None and planned.price.source == FILE_SOURCE:
        return planned.price
    if served != planned.model and (found := prices.price_for(served, _url(provider))):
        return found
    return planned.price


def _url(provider: str) -> str:
    # genai-prices recognises a provider by its API URL; the host is what identifies it.
    return f"https://{provider}/"
