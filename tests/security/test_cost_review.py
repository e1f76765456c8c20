"""Issue 18 reviewed as its first attacker: what reaches the cost events, budgets and caps.

Each test here failed on the code before its fix (named in the test's comment).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agenttasks.application.budgets import BudgetCommands, BudgetDefaults
from agenttasks.application.store import open_event_store
from agenttasks.application.task_configs import ConfigError, parse_config
from agenttasks.application.tasks import Actor
from agenttasks.domain.budget import Budget, budget_id
from agenttasks.settings import Settings, SettingsError
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


# Before: Python's \d let other scripts' digits through (Arabic-Indic five "/day" was 5/day,
# stored as typed),
# and a budget was stored as the admin spelled it ("5\t/days").
@pytest.mark.parametrize("typed", ["\u0665/day", "\uff15/day", "5\u00a0/day"])
def test_a_budget_in_other_digits_or_spaces_is_refused_with_our_message(typed: str) -> None:
    commands = BudgetCommands(open_event_store(), BudgetDefaults())
    with pytest.raises(ValueError, match="a budget is USD per day or month"):
        commands.set(Actor("root", is_admin=True), "ann", typed, None)


def test_a_budget_is_stored_spelled_one_way() -> None:
    store = open_event_store()
    BudgetCommands(store, BudgetDefaults()).set(Actor("root", is_admin=True), "ann", "5\t/Days", 50)
    stored = [
        e
        for e in store.repository.event_store.get(budget_id("ann"))
        if isinstance(e, Budget.BudgetSet)
    ]
    assert [e.budget for e in stored] == ["5/day"]


# Before: the same \d let an Arabic-Indic five through as a max_cost of 5 USD, stored as typed.
@pytest.mark.parametrize("typed", ["\u0665", "\uff11", "0.\u0665"])
def test_a_max_cost_in_other_digits_is_refused(typed: str) -> None:
    with pytest.raises(ConfigError, match=r"task_config\.max_cost must be a number"):
        parse_config("summary", {"content": "x", "max_cost": typed})


# Before: any finite price was taken; 1e-999990 (9 characters) made every call's cost_usd a
# string of a million digits in its event, and 1e-1000005 made the budget guard's arithmetic
# raise decimal.Overflow.
@pytest.mark.parametrize("price", ["1e-999990", "1e-1000005", "0.0000000001"])
def test_a_price_with_absurd_decimal_places_stops_the_start(tmp_path: Path, price: str) -> None:
    path = tmp_path / "prices.json"
    path.write_text('{"m": {"input_per_mtok": ' + price + ', "output_per_mtok": 1}}')
    with pytest.raises(SettingsError, match="more than 9 decimal places"):
        Settings.from_env({"AGENTTASKS_PRICES": str(path)})


def test_a_price_with_nine_decimal_places_or_in_exponent_form_is_taken(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text('{"m": {"input_per_mtok": 0.000000001, "output_per_mtok": 1.5e-3}}')
    prices = Settings.from_env({"AGENTTASKS_PRICES": str(path)}).prices
    assert prices is not None
    assert prices.prices["m"].output_per_mtok == Decimal("0.0015")
