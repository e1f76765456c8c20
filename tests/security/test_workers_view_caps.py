"""The Workers view (issue 15 item 4) is for admins only and bounded.

A user's token gets a 403 problem document; the list stops at AGENTTASKS_WORKERS_LIST_MAX and
says it did; one heartbeat lists at most MAX_REPORTED_RUNNING attempts; the settings refuse
values out of their bounds. On a real Postgres, NATS and API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from agenttasks.servers.nats import EmbeddedNats
from agenttasks.servers.postgres import EmbeddedPostgres, create_database
from agenttasks.settings import Settings, SettingsError
from agenttasks.workers.heartbeats import (
    MAX_REPORTED_RUNNING,
    Heartbeats,
    RunningAttempt,
    WorkerIdentity,
)
from tests.integration.api_client import bearer, serving, settings_for
from tests.integration.stack import running_stack

URL = "/api/v1/utils/workers/"
LIST_MAX = 2


@pytest.fixture(scope="module")
async def world(
    postgres: EmbeddedPostgres, module_nats: EmbeddedNats
) -> AsyncIterator[tuple[httpx.AsyncClient, AsyncConnectionPool[Any]]]:
    database_url = create_database(postgres.url, "test_workers_view_caps")
    env = {"AGENTTASKS_WORKERS_LIST_MAX": str(LIST_MAX)}
    settings = settings_for(database_url, module_nats).with_(
        workers_list_max=Settings.from_env(env).workers_list_max
    )
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(database_url, min_size=1, open=False)
    await pool.open()
    try:
        async with (
            running_stack(database_url, module_nats),
            serving(settings) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):
            yield client, pool
    finally:
        await pool.close()


def heartbeats(pool: AsyncConnectionPool[Any], name: str) -> Heartbeats:
    return Heartbeats(pool, WorkerIdentity(f"host:1:{name}", ("summary",), 4), every=5)


async def test_a_user_gets_a_403_problem_document_and_no_workers(
    world: tuple[httpx.AsyncClient, AsyncConnectionPool[Any]],
) -> None:
    client, pool = world
    await heartbeats(pool, "seen-by-admins-only").beat([])
    answer = await client.get(URL, headers=bearer("mallory"))
    assert answer.status_code == 403
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["detail"] == "only admins see the workers and queues"
    assert "seen-by-admins-only" not in answer.text


async def test_the_list_stops_at_the_cap_and_says_so(
    world: tuple[httpx.AsyncClient, AsyncConnectionPool[Any]],
) -> None:
    client, pool = world
    for number in range(5):
        await heartbeats(pool, f"many-{number}").beat([])
    answer = await client.get(URL, headers=bearer("root", admin=True))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert len(body["workers"]) == LIST_MAX
    assert body["truncated"] is True
    assert body["limit"] == LIST_MAX
    assert body["counts"]["alive"] >= 5  # the counts cover every worker, listed or not


async def test_one_heartbeat_lists_a_bounded_number_of_attempts(
    world: tuple[httpx.AsyncClient, AsyncConnectionPool[Any]],
) -> None:
    _, pool = world
    now = datetime.now(UTC)
    many = [RunningAttempt(uuid4(), 1, now) for _ in range(MAX_REPORTED_RUNNING + 5)]
    await heartbeats(pool, "busy").beat(many)
    async with pool.connection() as connection:
        cursor = await connection.execute(
            "SELECT jsonb_array_length(running) FROM worker_heartbeats WHERE worker_id = %s",
            ("host:1:busy",),
        )
        assert await cursor.fetchone() == (MAX_REPORTED_RUNNING,)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AGENTTASKS_WORKERS_LIST_MAX", "0"),
        ("AGENTTASKS_WORKERS_LIST_MAX", "10001"),
        ("AGENTTASKS_WORKER_HEARTBEAT_SECONDS", "0"),
        ("AGENTTASKS_WORKER_HEARTBEAT_SECONDS", "301"),
    ],
)
def test_the_settings_refuse_values_out_of_bounds(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: value})
