"""The worker's model wrapper counts reported tokens under the configured model's name."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import REGISTRY

from agenttasks.metrics.llm import MeteredModel
from agenttasks.workers.llm import Completion, Usage


class FakeModel:
    """Our LanguageModel interface, answering with a server-chosen model name."""

    engine = "openai"
    model = "metered-test-model"
    provider = "models.example"

    async def complete(
        self,
        system: str,
        prompt: str,
        *,
        max_tokens: int,
        on_text: Callable[[str], None] | None = None,
    ) -> Completion:
        usage = Usage(11, 5) if prompt != "unreported" else None
        return Completion(text="ok", model="metered-test-model-2031-01-01", usage=usage)

    async def aclose(self) -> None:
        return None


def tokens(kind: str) -> float:
    value = REGISTRY.get_sample_value(
        "agenttasks_llm_tokens_total", {"model": "metered-test-model", "kind": kind}
    )
    return value or 0.0


async def test_reported_tokens_count_under_the_configured_model() -> None:
    model = MeteredModel(FakeModel())
    before = tokens("prompt"), tokens("completion")
    await model.complete("s", "p", max_tokens=10)
    await model.complete("s", "unreported", max_tokens=10)
    assert (tokens("prompt"), tokens("completion")) == (before[0] + 11, before[1] + 5)
    assert model.provider == "models.example"  # the rest of the interface passes through
    samples = REGISTRY.get_sample_value(
        "agenttasks_llm_tokens_total",
        {"model": "metered-test-model-2031-01-01", "kind": "prompt"},
    )
    assert samples is None, "the server's own name for the model is no label"
