"""Budgets' pure rules: the text of a budget, the UTC periods, who may set one, the fallbacks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from agenttasks.application.budgets import BudgetCommands, BudgetDefaults, NotAdminForBudgets
from agenttasks.application.store import open_event_store
from agenttasks.application.tasks import Actor
from agenttasks.domain.budget import Limit, parse_budget, period_end, period_start

ROOT = Actor("root", is_admin=True)


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("5.00/day", Limit(Decimal("5.00"), "day")),
        ("50/month", Limit(Decimal(50), "month")),
        (" 0.000001 / Days ", Limit(Decimal("0.000001"), "day")),
        ("OFF", None),
    ],
)
def test_a_budget_reads_as_the_setting_spells_it(text: str, limit: Limit | None) -> None:
    assert parse_budget(text) == limit


@pytest.mark.parametrize(
    "text", ["", "7", "7/week", "-1/day", "0/day", "1e3/day", "NaN/day", "7.0000001/day", "9" * 50]
)
def test_anything_else_is_refused_without_repeating_it(text: str) -> None:
    with pytest.raises(ValueError, match=r"5\.00/day|above 0") as raised:
        parse_budget(text)
    assert not text or text not in str(raised.value)


def test_periods_are_utc_days_and_months() -> None:
    # 23:30 on 31 December in New York is already 1 January in UTC.
    evening = datetime(2026, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert period_start("day", evening) == datetime(2027, 1, 1, tzinfo=UTC)
    assert period_end("day", evening) == datetime(2027, 1, 2, tzinfo=UTC)
    december = datetime(2026, 12, 15, 12, tzinfo=UTC)
    assert period_start("month", december) == datetime(2026, 12, 1, tzinfo=UTC)
    assert period_end("month", december) == datetime(2027, 1, 1, tzinfo=UTC)


def test_a_users_budget_falls_back_to_the_default_then_to_the_setting() -> None:
    commands = BudgetCommands(open_event_store(), BudgetDefaults("1/day", 80))
    assert commands.effective("ann").source == "setting"
    with pytest.raises(NotAdminForBudgets):
        commands.set(Actor("ann"), "ann", "1000/day", None)
    commands.set(ROOT, None, "10/month", 50)
    found = commands.effective("ann")
    assert (found.text, found.source, found.soft_limit_percent) == ("10/month", "default", 50)
    commands.set(ROOT, "ann", "off", None)
    found = commands.effective("ann")
    assert (found.limit, found.source, found.soft_limit_percent) == (None, "user", 50)
    commands.set(ROOT, "ann", None, 90)  # back to the default's budget, her own soft limit
    found = commands.effective("ann")
    assert (found.text, found.source, found.soft_limit_percent) == ("10/month", "default", 90)
    assert commands.effective("bob").text == "10/month"
