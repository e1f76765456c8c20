"""Issue 18 reviewed as its first attacker: what reaches the cost events, budgets and caps.

Each test here failed on the code before its fix (named in the test's comment).
"""

from __future__ import annotations

from typing import Any

import pytest

from agenttasks.workers.llm import OpenAIModel
from tests.fakes.llm_server import MODEL, reply, serve_llm

# Before: `model = chunk.model or model` took whatever the server sent into Completion.model,
# hence into Task.ModelCalled, the update's message and the price lookup.
HOSTILE_NAMES: list[tuple[str, Any]] = [
    ("a megabyte", "m" * 1_000_000),
    ("a newline", "fake-gpt\nINFO forged log line"),
    ("a tagged object", {"_type_": "decimal_str", "_data_": "1"}),
    ("a number", 42),
    ("padded", " fake-gpt "),
]


@pytest.mark.parametrize(("case", "name"), HOSTILE_NAMES, ids=[c for c, _ in HOSTILE_NAMES])
async def test_a_servers_hostile_model_name_is_replaced_by_the_name_asked_for(
    case: str, name: Any
) -> None:
    async with serve_llm() as fake:
        fake.script(reply("an answer", model=name), reply("another", model="fake-gpt-2026-01"))
        model = OpenAIModel(api_key="test-key", base_url=fake.base_url, model=MODEL)
        try:
            hostile = await model.complete("s", "p", max_tokens=10)
            plausible = await model.complete("s", "p", max_tokens=10)
        finally:
            await model.aclose()
    assert hostile.model == MODEL
    assert plausible.model == "fake-gpt-2026-01"  # a real alias resolution is still recorded
