"""Issue 15, item 1: nothing limited how much one user submits.

Each test here failed on the code before the change: every create was admitted however many
came in, a retry by hand never counted, and there was no way to set or read a user's limits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID

import httpx
import pytest

from agenttasks.application.tasks import Actor
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.settings import Settings, SettingsError
from tests.integration.api_client import bearer, serving, settings_for
from tests.integration.stack import Stack, running_stack
from tests.waiting import wait_until

BASE = "/api/v1/utils"
BODY = {"title": "t", "task_type": "summary", "task_config": {"content": "x"}}
ALICE = bearer("alice")
ADMIN = bearer("root", admin=True)


@asynccontextmanager
async def api(
    database_url: str, nats: EmbeddedNats, **limits: object
) -> AsyncIterator[tuple[httpx.AsyncClient, Stack]]:
    settings = settings_for(database_url, nats).with_(limits_cache_seconds=0, **limits)
    async with (
        running_stack(database_url, nats) as stack,
        serving(settings) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield client, stack


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("AGENTTASKS_RATE_LIMIT", "lots", "N/minute"),
        ("AGENTTASKS_RATE_LIMIT", "5/fortnight", "N/minute"),
        ("AGENTTASKS_RATE_LIMIT", "2000000/second", "between 1 and"),
        ("AGENTTASKS_MAX_ACTIVE_TASKS", "-1", "between 0"),
        ("AGENTTASKS_LIMITS_CACHE_SECONDS", "301", "between 0 and 300"),
    ],
)
def test_limit_settings_are_bounded(variable: str, value: str, says: str) -> None:
    with pytest.raises(SettingsError, match=variable) as raised:
        Settings.from_env({variable: value})
    assert says in str(raised.value)


def test_limit_settings_read_their_variables() -> None:
    settings = Settings.from_env(
        {"AGENTTASKS_RATE_LIMIT": "120/Minute", "AGENTTASKS_MAX_ACTIVE_TASKS": "10"}
    )
    assert (settings.rate_limit, settings.max_active_tasks) == ("120/minute", 10)
    assert (Settings().rate_limit, Settings().max_active_tasks) == ("off", 0)


async def test_creates_over_the_rate_are_429_and_creates_from_templates_count(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async with api(database_url, nats_server, rate_limit="3/day") as (client, _):
        template = await client.post(
            f"{BASE}/ai-task-templates/",
            json={"name": "n", "task_type": "summary", "default_config": {"content": "x"}},
            headers=ALICE,
        )
        assert template.status_code == 201, template.text
        from_template = f"{BASE}/ai-task-templates/{template.json()['id']}/create_task/"
        first = await client.post(f"{BASE}/ai-tasks/", json=BODY, headers=ALICE)
        assert first.status_code == 201
        assert first.headers["RateLimit-Limit"] == "3"
        assert first.headers["RateLimit-Policy"] == "3;w=86400"
        assert (await client.post(from_template, headers=ALICE)).status_code == 201
        assert (await client.post(from_template, headers=ALICE)).status_code == 201
        refused = await client.post(from_template, headers=ALICE)
        assert refused.status_code == 429
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["detail"].startswith("rate limit: at most 3/day task creations")
        assert 1 <= int(refused.headers["Retry-After"]) <= 86400
        assert refused.headers["Retry-After"] == refused.headers["RateLimit-Reset"]
        again = await client.post(f"{BASE}/ai-tasks/", json=BODY, headers=ALICE)
        assert again.status_code == 429
        # Refused creates stored nothing: alice has her three tasks.
        listed = (await client.get(f"{BASE}/ai-tasks/", headers=ALICE)).json()
        assert listed["count"] == 3


async def test_a_retry_by_hand_counts_against_active_tasks(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async with api(database_url, nats_server, max_active_tasks=1) as (client, stack):
        url = f"{BASE}/ai-tasks/"
        first = UUID((await client.post(url, json=BODY, headers=ALICE)).json()["id"])
        busy = await client.post(url, json=BODY, headers=ALICE)
        assert busy.status_code == 429
        assert busy.json()["limit"] == "active"
        assert "limit is 1" in busy.json()["detail"]
        stack.commands.cancel(Actor("alice"), first)

        async def cancelled() -> bool:
            task = (await client.get(f"{url}{first}/", headers=ALICE)).json()
            return bool(task["status"] == "cancelled")

        await wait_until(cancelled)
        assert (await client.post(url, json=BODY, headers=ALICE)).status_code == 201
        retry = await client.post(f"{url}{first}/retry/", headers=ALICE)
        assert retry.status_code == 429
        assert retry.json()["limit"] == "active"


async def test_only_an_admin_sets_limits_and_bad_values_get_our_message(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async with api(database_url, nats_server) as (client, _):
        url = f"{BASE}/users/alice/limits/"
        mine = await client.get(url, headers=ALICE)
        assert mine.status_code == 200
        assert mine.json() == {
            "user": "alice",
            "rate_limit": "off",
            "rate_limit_source": "default",
            "max_active_tasks": 0,
            "max_active_tasks_source": "default",
        }
        assert (await client.get(f"{BASE}/users/bob/limits/", headers=ALICE)).status_code == 403
        denied = await client.put(url, json={"rate_limit": "off"}, headers=ALICE)
        assert denied.status_code == 403
        assert denied.headers["content-type"].startswith("application/problem+json")
        for body, says in (
            ({"rate_limit": "9/fortnight"}, "a rate limit is N/second"),
            ({"rate_limit": "\u0665/minute"}, "a rate limit is N/second"),  # not ASCII digits
            ({"max_active_tasks": -1}, "max_active_tasks must be between 0"),
            ({"rate_limit": 5}, "rate_limit"),
            ({"burst": 5}, "burst"),
        ):
            answer = await client.put(url, json=body, headers=ADMIN)
            assert answer.status_code == 400, (body, answer.text)
            assert says in answer.json()["detail"]
            assert "fortnight" not in answer.text
            assert "\u0665" not in answer.json()["detail"]
        too_long = await client.get(f"{BASE}/users/{'u' * 201}/limits/", headers=ADMIN)
        assert too_long.status_code == 400
        # Set, then back to the default with null: both are events; the last one holds.
        assert (await client.put(url, json={"rate_limit": "1/day"}, headers=ADMIN)).json()[
            "rate_limit"
        ] == "1/day"
        assert (await client.post(f"{BASE}/ai-tasks/", json=BODY, headers=ALICE)).status_code == 201
        assert (await client.post(f"{BASE}/ai-tasks/", json=BODY, headers=ALICE)).status_code == 429
        back = await client.put(url, json={"rate_limit": None}, headers=ADMIN)
        assert back.json()["rate_limit_source"] == "default"
        assert (await client.post(f"{BASE}/ai-tasks/", json=BODY, headers=ALICE)).status_code == 201
