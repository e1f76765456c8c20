"""Per-user limits without I/O: the rate's spelling, the aggregate's guards, the lookup's TTL."""

from __future__ import annotations

import pytest

from agenttasks.application.store import open_event_store
from agenttasks.application.tasks import Actor
from agenttasks.application.user_limits import Limits, LimitsLookup, NotAdmin, UserLimitsCommands
from agenttasks.domain.limits import UserLimits, parse_rate

ROOT = Actor("root", is_admin=True)
DEFAULTS = Limits((120, 60), 10)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("120/minute", (120, 60)),
        ("1/second", (1, 1)),
        (" 5/Hours ", (5, 3600)),
        ("1000000/day", (1_000_000, 86400)),
        ("off", None),
        ("0", None),
    ],
)
def test_rates_are_spelled_count_slash_unit(text: str, parsed: tuple[int, int] | None) -> None:
    assert parse_rate(text) == parsed


@pytest.mark.parametrize(
    "text",
    [
        "", "120", "/minute", "x/minute", "-1/minute", "0/minute", "5/week", "1000001/day",
        "\u0665/minute", "\uff15/minute",  # Arabic-Indic and full-width five
    ],
)  # fmt: skip
def test_other_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        parse_rate(text)


def test_the_aggregate_keeps_the_last_overrides_and_refuses_bad_ones() -> None:
    limits = UserLimits.create("alice")
    limits.set(by="root", rate_limit="10/Minute", max_active_tasks=3)
    assert (limits.rate_limit, limits.max_active_tasks) == ("10/minute", 3)
    with pytest.raises(ValueError, match="max_active_tasks"):
        limits.set(by="root", rate_limit=None, max_active_tasks=-1)
    with pytest.raises(ValueError, match="rate limit"):
        limits.set(by="root", rate_limit="lots", max_active_tasks=None)
    assert len(limits.collect_events()) == 2  # Created, one LimitsSet


def test_overrides_fall_back_to_the_defaults_and_only_admins_set_them() -> None:
    commands = UserLimitsCommands(open_event_store(), DEFAULTS)
    assert commands.effective("alice") is DEFAULTS
    with pytest.raises(NotAdmin):
        commands.set(Actor("alice"), "alice", "off", None)
    commands.set(ROOT, "alice", "off", None)
    assert commands.effective("alice") == Limits(None, 10, "user", "default")
    commands.set(ROOT, "alice", None, 0)
    assert commands.effective("alice") == Limits((120, 60), 0, "default", "user")
    assert commands.effective("bob") is DEFAULTS


def test_the_lookup_keeps_limits_for_its_ttl_only() -> None:
    now = [0.0]
    loads: list[str] = []

    def load(user: str) -> Limits:
        loads.append(user)
        return DEFAULTS

    lookup = LimitsLookup(load, ttl=5.0, size=2, clock=lambda: now[0])
    assert lookup.cached("a") is None
    lookup.get("a")
    lookup.get("a")
    now[0] = 4.9
    assert lookup.cached("a") is DEFAULTS
    now[0] = 5.0
    lookup.get("a")
    lookup.forget("a")
    lookup.get("a")
    lookup.get("b")
    lookup.get("c")  # over `size`: the least recent ("a") goes
    assert lookup.cached("a") is None
    assert loads == ["a", "a", "a", "b", "c"]
