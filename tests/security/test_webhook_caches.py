"""The deliverer's caches stay within their caps: users cannot grow the deliverer's memory."""

from __future__ import annotations

import asyncio

import pytest
from psycopg_pool import AsyncConnectionPool

from agenttasks.settings import Settings, SettingsError
from agenttasks.webhooks import store as tables
from agenttasks.webhooks.interest import EndpointOwners, TaskUrls
from tests.waiting import wait_until


def test_task_urls_keep_only_the_newest_tasks_up_to_the_cap() -> None:
    urls = TaskUrls(3)
    for n in range(10):
        urls.learn(f"task-{n}", None if n % 2 else f"https://example.org/{n}")
    assert len(urls) == 3
    assert urls.get("task-0") == (False, None), "forgotten: the store is asked again"
    assert urls.get("task-9") == (True, None)
    assert urls.get("task-8") == (True, "https://example.org/8")


def test_the_cache_caps_are_settings_with_bounds() -> None:
    settings = Settings.from_env(
        {"AGENTTASKS_WEBHOOK_TASK_URL_CACHE": "5", "AGENTTASKS_WEBHOOK_OWNER_CACHE": "0"}
    )
    assert (settings.webhook_task_url_cache, settings.webhook_owner_cache) == (5, 0)
    with pytest.raises(SettingsError, match="AGENTTASKS_WEBHOOK_OWNER_CACHE"):
        Settings.from_env({"AGENTTASKS_WEBHOOK_OWNER_CACHE": "10000000"})


async def test_more_owners_than_the_cap_are_not_cached_and_every_event_asks(
    database_url: str,
) -> None:
    async with AsyncConnectionPool(database_url, min_size=1, max_size=2, open=False) as pool:
        async with pool.connection() as connection:
            await tables.ensure_tables(connection)
        for owner in ("alice", "bob"):
            await tables.register(
                pool, owner=owner, url="https://example.org/hook", events=["task.completed"],
                secret="whsec_" + "x" * 32, max_per_user=10,
            )  # fmt: skip
    owners = EndpointOwners(database_url, capacity=1)
    stop = asyncio.Event()
    running = asyncio.create_task(owners.run(stop))
    try:
        await wait_until(lambda: owners.refreshes >= 1)
        assert not owners.has_none("carol"), "over the cap nothing is known: the database path"
    finally:
        stop.set()
        await running
