"""Issue 18, items 3 and 4: nothing bounded what a user or a task could spend on models.

Each test here failed on the code before the change: there was no budget to set (so no one was
refused setting their own), `max_cost` was an unknown field, and the budget settings did not exist.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from agenttasks.application.task_configs import ConfigError, parse_config
from agenttasks.servers.nats import EmbeddedNats, start_nats
from agenttasks.servers.postgres import EmbeddedPostgres, create_database
from agenttasks.settings import Settings, SettingsError
from tests.conftest import free_port
from tests.integration.api_client import bearer, serving, settings_for
from tests.integration.stack import running_stack

BASE = "/api/v1/utils"
ALICE = bearer("alice")
ADMIN = bearer("root", admin=True)
HUGE = "9" * 100_000


@pytest.fixture(scope="module")
async def client(
    postgres: EmbeddedPostgres,
    tmp_path_factory: pytest.TempPathFactory,
    nats_passwords: dict[str, str],
) -> AsyncIterator[httpx.AsyncClient]:
    database_url = create_database(postgres.url, "security_budgets")
    nats: EmbeddedNats = start_nats(
        tmp_path_factory.mktemp("nats"), port=free_port(), passwords=nats_passwords
    )
    try:
        settings = settings_for(database_url, nats).with_(budgets_cache_seconds=0)
        async with (
            running_stack(database_url, nats),
            serving(settings) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as http,
        ):
            yield http
    finally:
        nats.stop()


def assert_ours(answer: httpx.Response, status: int, says: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = answer.json()
    assert says in problem["detail"], problem
    return problem


async def test_a_user_cannot_set_their_own_budget_nor_the_default(
    client: httpx.AsyncClient,
) -> None:
    body = {"budget": "1000000/day"}
    own = await client.put(f"{BASE}/users/alice/budget/", json=body, headers=ALICE)
    assert_ours(own, 403, "only an admin sets a budget")
    default = await client.put(f"{BASE}/budgets/default/", json=body, headers=ALICE)
    assert_ours(default, 403, "only an admin sets a budget")
    # Nor read another's, and nobody reads without a token.
    assert (await client.get(f"{BASE}/budgets/default/")).status_code == 401
    assert (await client.get(f"{BASE}/users/alice/budget/")).status_code == 401
    other = await client.get(f"{BASE}/users/bob/budget/", headers=ALICE)
    assert other.status_code == 403
    # Nothing changed: alice's budget is still the setting's (off).
    seen = (await client.get(f"{BASE}/users/alice/budget/", headers=ALICE)).json()
    assert seen["budget"] == "off"
    assert seen["source"] == "setting"
    # An admin can.
    answer = await client.put(f"{BASE}/users/alice/budget/", json=body, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    assert answer.json()["budget"] == "1000000/day"


@pytest.mark.parametrize(
    "budget", ["NaN/day", "Infinity/day", "-5/day", "1e400/day", "5/fortnight", HUGE + "/day"]
)
async def test_hostile_budgets_are_refused_in_our_words(
    client: httpx.AsyncClient, budget: str
) -> None:
    answer = await client.put(
        f"{BASE}/users/mallory/budget/", json={"budget": budget}, headers=ADMIN
    )
    assert answer.status_code == 400, answer.text
    assert "9999" not in answer.text
    assert "NaN" not in answer.text


@pytest.mark.parametrize(
    "max_cost",
    [
        "NaN",
        "nan",
        "Infinity",
        -1,
        "-0.5",
        0,
        "1e400",
        "1e3",
        10**9,
        "0.0000001",
        "0x10",
        True,
        HUGE,
    ],
)
async def test_hostile_max_costs_get_a_400_in_our_words(
    client: httpx.AsyncClient, max_cost: Any
) -> None:
    config = {"content": "some text", "max_cost": max_cost}
    body = {"title": "t", "task_type": "summary", "task_config": config}
    answer = await client.post(f"{BASE}/ai-tasks/", json=body, headers=ALICE)
    problem = assert_ours(answer, 400, "max_cost")
    assert "9999" not in answer.text  # never echoed
    assert "unknown field" not in problem["detail"]


async def test_a_number_too_large_for_json_gets_a_400_in_our_words(
    client: httpx.AsyncClient,
) -> None:
    raw = b'{"title": "t", "task_type": "summary", "task_config": {"content": "x", "max_cost": 1e400}}'
    answer = await client.post(
        f"{BASE}/ai-tasks/", content=raw, headers={**ALICE, "Content-Type": "application/json"}
    )
    assert answer.status_code == 400, answer.text
    assert "1e400" not in answer.text


async def test_sound_caps_are_taken_and_hostile_ones_refused_in_template_defaults(
    client: httpx.AsyncClient,
) -> None:
    for max_cost in ("0.50", 2, 0.25):
        config = {"content": "x", "max_cost": max_cost, "max_total_tokens": 5000}
        body = {"title": "t", "task_type": "summary", "task_config": config}
        answer = await client.post(f"{BASE}/ai-tasks/", json=body, headers=ALICE)
        assert answer.status_code == 201, answer.text
        assert answer.json()["task_config"]["max_cost"] == max_cost
    template = {
        "name": "capped",
        "task_type": "research",
        "default_config": {"topic": "tides", "max_cost": "NaN"},
        "config_schema": {"type": "object"},
    }
    answer = await client.post(f"{BASE}/ai-task-templates/", json=template, headers=ALICE)
    assert_ours(answer, 400, "max_cost")
    over = {**template, "default_config": {"topic": "tides", "max_total_tokens": 10**10}}
    answer = await client.post(f"{BASE}/ai-task-templates/", json=over, headers=ALICE)
    assert_ours(answer, 400, "max_total_tokens")


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("AGENTTASKS_DEFAULT_BUDGET", "5/fortnight", "5.00/day"),
        ("AGENTTASKS_DEFAULT_BUDGET", "NaN/day", "5.00/day"),
        ("AGENTTASKS_DEFAULT_BUDGET", "99999999999/day", "5.00/day"),
        ("AGENTTASKS_DEFAULT_BUDGET", "\u0665/day", "5.00/day"),  # not ASCII digits (was taken)
        ("AGENTTASKS_MAX_TASK_COST", "nan", "above 0"),
        ("AGENTTASKS_MAX_TASK_COST", "-1", "above 0"),
        ("AGENTTASKS_MAX_TASK_COST", "1e400", "above 0"),
        ("AGENTTASKS_BUDGET_SOFT_LIMIT_PERCENT", "0", "between 1 and 100"),
        ("AGENTTASKS_BUDGET_LEASE_SECONDS", "5", "between 10"),
        ("AGENTTASKS_BUDGETS_CACHE_SECONDS", "301", "between 0 and 300"),
    ],
)
def test_budget_settings_are_bounded(variable: str, value: str, says: str) -> None:
    with pytest.raises(SettingsError, match=variable) as raised:
        Settings.from_env({variable: value})
    assert says in str(raised.value)


def test_the_default_budget_setting_is_kept_as_parsed() -> None:
    assert Settings.from_env({"AGENTTASKS_DEFAULT_BUDGET": "5.00 / Days"}).default_budget == (
        "5.00/day"
    )


def test_max_cost_is_parsed_exactly_and_capped() -> None:
    assert str(parse_config("summary", {"content": "x", "max_cost": 0.1}).max_cost) == "0.1"
    with pytest.raises(ConfigError) as raised:
        parse_config("summary", {"content": "x", "max_cost": "1000000.01"})
    assert "at most 1000000" in str(raised.value)


async def test_a_user_id_with_control_characters_is_a_400_not_a_500(
    client: httpx.AsyncClient,
) -> None:
    # Before: a NUL in the path stored a Budget event, then the ledger's text column refused
    # it (a 500 on the PUT and on every later GET); a newline was stored and echoed.
    for user in ("a%00b", "a%0Ab", "a%1Bb"):
        path = f"{BASE}/users/{user}/budget/"
        put = await client.put(path, json={"budget": "5/day"}, headers=ADMIN)
        assert_ours(put, 400, "a user id is 1 to 200 printable characters")
        assert_ours(await client.get(path, headers=ADMIN), 400, "printable characters")
