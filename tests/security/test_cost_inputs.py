"""Issue 18, items 1 and 5: what prices and usage the cost of a task may be built from.

Before the change AGENTTASKS_PRICES did not exist and a server's usage report was taken as it
came: a negative count made a call's tokens negative, a huge one made them huge, and nothing
said so. Each test here fails on that code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agenttasks.settings import Settings, SettingsError
from agenttasks.workers.llm import OpenAIModel
from tests.fakes.llm_server import MODEL, reply, serve_llm

HOSTILE: list[tuple[str, bytes, str]] = [
    ("not an object", b"[1, 2]", "must be a JSON object"),
    ("not JSON", b"{'gpt': 1}", "not JSON (line 1, column 2)"),
    ("not UTF-8", b'{"\xff": {}}', "not UTF-8"),
    ("NaN", b'{"m": {"input_per_mtok": NaN, "output_per_mtok": 1}}', "NaN is not a price"),
    ("Infinity", b'{"m": {"input_per_mtok": 1, "output_per_mtok": Infinity}}', "Infinity"),
    ("negative", b'{"m": {"input_per_mtok": -1, "output_per_mtok": 1}}', "between 0 and"),
    ("absurd", b'{"m": {"input_per_mtok": 1e400, "output_per_mtok": 1}}', "between 0 and"),
    ("a string", b'{"m": {"input_per_mtok": "1", "output_per_mtok": 1}}', "must be a number"),
    ("a bool", b'{"m": {"input_per_mtok": true, "output_per_mtok": 1}}', "must be a number"),
    ("missing", b'{"m": {"input_per_mtok": 1}}', "output_per_mtok is missing"),
    ("unknown key", b'{"m": {"input_per_mtok": 1, "output_per_mtok": 1, "x": 1}}', "unknown key"),
    ("twice", b'{"m": {"input_per_mtok": 1, "output_per_mtok": 1}, "m": {}}', "appears twice"),
    ("empty name", b'{" ": {"input_per_mtok": 1, "output_per_mtok": 1}}', "1 to 200"),
    ("control", b'{"a\\u0000b": {"input_per_mtok": 1, "output_per_mtok": 1}}', "control"),
    ("long number", b'{"m": {"input_per_mtok": 1.' + b"0" * 60 + b', "output_per_mtok": 1}}',
     "longer than 40"),
    ("deep", b'{"m": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "content", "says"), HOSTILE, ids=[c for c, _, _ in HOSTILE])
def test_a_hostile_price_file_stops_the_start_with_our_message(
    tmp_path: Path, case: str, content: bytes, says: str
) -> None:
    path = tmp_path / "prices.json"
    path.write_bytes(content)
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"AGENTTASKS_PRICES": str(path)})
    message = str(refused.value)
    assert message.startswith("AGENTTASKS_PRICES: "), message
    assert says in message, message
    assert "Expecting" not in message  # never the json module's own text


def test_a_price_file_too_large_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    entry = {"input_per_mtok": 1, "output_per_mtok": 1}
    path.write_text(json.dumps({f"model-{n}": entry for n in range(40_000)}))
    with pytest.raises(SettingsError, match="larger than 1,048,576 bytes"):
        Settings.from_env({"AGENTTASKS_PRICES": str(path)})


def test_a_missing_price_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"AGENTTASKS_PRICES: cannot read .*nothing\.json"):
        Settings.from_env({"AGENTTASKS_PRICES": str(tmp_path / "nothing.json")})


def test_the_reported_tokens_cap_has_bounds() -> None:
    assert Settings.from_env({}).max_reported_tokens == 10_000_000
    with pytest.raises(SettingsError, match="AGENTTASKS_MAX_REPORTED_TOKENS"):
        Settings.from_env({"AGENTTASKS_MAX_REPORTED_TOKENS": "0"})


ABSURD: list[tuple[str, Any, tuple[int, int, int, str]]] = [
    ("negative", {"prompt_tokens": -5, "completion_tokens": 2}, (0, 0, 0, "invalid")),
    ("a float", {"prompt_tokens": 1.5, "completion_tokens": 2}, (0, 0, 0, "invalid")),
    ("a string", {"prompt_tokens": "9", "completion_tokens": 2}, (0, 0, 0, "invalid")),
    ("a bool", {"prompt_tokens": True, "completion_tokens": 2}, (0, 0, 0, "invalid")),
    ("absent counts", {"total_tokens": 7}, (0, 0, 0, "invalid")),
    ("cached over prompt", {"prompt_tokens": 2, "completion_tokens": 1,
                            "prompt_tokens_details": {"cached_tokens": 9}}, (0, 0, 0, "invalid")),
    ("huge", {"prompt_tokens": 10**30, "completion_tokens": 10**30,
              "prompt_tokens_details": {"cached_tokens": 10**30}}, (5000, 5000, 5000, "capped")),
    ("sane", {"prompt_tokens": 40, "completion_tokens": 8,
              "prompt_tokens_details": {"cached_tokens": 32}}, (40, 8, 32, "reported")),
]  # fmt: skip


@pytest.mark.parametrize(("case", "report", "recorded"), ABSURD, ids=[c for c, _, _ in ABSURD])
async def test_a_server_reporting_absurd_usage_is_capped_or_refused_and_says_so(
    case: str, report: Any, recorded: tuple[int, int, int, str]
) -> None:
    async with serve_llm() as fake:
        fake.script(reply("an answer", usage_report=report))
        model = OpenAIModel(
            api_key="test-key", base_url=fake.base_url, model=MODEL, max_reported_tokens=5000
        )
        try:
            completion = await model.complete("s", "p", max_tokens=10)
        finally:
            await model.aclose()
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.status) == (
        recorded
    )
