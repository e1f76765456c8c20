"""A LanguageModel that counts the tokens each call reports (per worker process)."""

from __future__ import annotations

from typing import Any

from agenttasks.metrics.process import LLM_TOKENS
from agenttasks.workers.llm import Completion, LanguageModel


class MeteredModel:
    """Wraps a model; every completion's reported usage goes to agenttasks_llm_tokens_total.

    The label is the model the operator configured (the server may answer with another name
    for it, an alias resolved, which would be one more series per name it invents).
    """

    def __init__(self, inner: LanguageModel) -> None:
        self.inner = inner
        self.model = inner.model

    async def complete(self, *args: Any, **kwargs: Any) -> Completion:
        """The inner model's completion, its usage counted."""
        completion = await self.inner.complete(*args, **kwargs)
        if completion.usage is not None:
            LLM_TOKENS.labels(self.model, "prompt").inc(completion.usage.prompt_tokens)
            LLM_TOKENS.labels(self.model, "completion").inc(completion.usage.completion_tokens)
        return completion

    async def aclose(self) -> None:
        """Closes the inner model."""
        await self.inner.aclose()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
