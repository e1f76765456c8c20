"""The Workers view on real servers: GET /api/v1/utils/workers/ shows a worker's heartbeat with
its types and running attempt, refuses users, and counts the backlog JetStream holds.

One stack (database, NATS, relay, task projector) and one API for the module; the workers run
in the test's loop through tests/integration/worker_harness.py, beating every second.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from agenttasks import bootstrap
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.servers.postgres import EmbeddedPostgres, create_database
from agenttasks.settings import Settings
from agenttasks.workers.context import AgentContext
from agenttasks.workers.heartbeats import Heartbeats, WorkerIdentity
from tests.integration.api_client import bearer, serving, settings_for
from tests.integration.stack import Stack, running_stack
from tests.integration.worker_harness import create, running_worker, with_options
from tests.waiting import wait_for_value

ADMIN = bearer("root", admin=True)
URL = "/api/v1/utils/workers/"


@pytest.fixture(scope="module")
def module_database(postgres: EmbeddedPostgres) -> str:
    return create_database(postgres.url, "test_workers_view")


@pytest.fixture(scope="module")
async def stack(module_database: str, module_nats: EmbeddedNats) -> AsyncIterator[Stack]:
    async with running_stack(module_database, module_nats) as running:
        yield running


@pytest.fixture(scope="module")
async def api(stack: Stack, module_nats: EmbeddedNats) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serving(settings_for(stack.database_url, module_nats)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield client


def beating_every_second(stack: Stack) -> Settings:
    return Settings(database_url=stack.database_url, worker_heartbeat_seconds=1)


async def view(api: httpx.AsyncClient) -> dict[str, Any]:
    answer = await api.get(URL, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def worker_in(body: dict[str, Any], worker_id: str) -> dict[str, Any] | None:
    return next((w for w in body["workers"] if w["id"] == worker_id), None)


async def test_a_running_worker_shows_its_types_and_running_task_then_stops(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    release = asyncio.Event()

    async def held(ctx: AgentContext) -> dict[str, Any]:
        await release.wait()
        return {"done": True}

    options = with_options(types=("custom",), concurrency=3)
    async with running_worker(
        stack, options=options, agents={"custom": held}, settings=beating_every_second(stack)
    ) as worker:
        task_id = create(stack, "custom", {"steps": [{"action": "fetch", "url": "http://x/"}]})

        async def running_it() -> dict[str, Any] | None:
            found = worker_in(await view(api), worker.worker_id)
            ids = [r["task_id"] for r in found["running"]] if found else []
            return found if str(task_id) in ids else None

        shown = await wait_for_value(running_it, lambda w: w is not None, 30, every=0.1)
        assert shown is not None
        assert shown["state"] == "alive"
        assert shown["task_types"] == ["custom"]
        assert shown["concurrency"] == 3
        assert shown["heartbeat_seconds"] == 1
        assert shown["running"][0]["attempt"] == 1
        assert set(shown["running"][0]) == {"task_id", "attempt", "started_at"}  # no content
        release.set()
    body = await view(api)
    stopped = worker_in(body, worker.worker_id)
    assert stopped is not None
    assert stopped["state"] == "stopped", stopped
    assert stopped["running"] == []
    assert stopped["ended_at"] is not None
    assert body["counts"]["stopped"] >= 1


async def test_a_user_is_refused_with_a_problem_document(api: httpx.AsyncClient) -> None:
    answer = await api.get(URL, headers=bearer("mallory"))
    assert answer.status_code == 403
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["detail"] == "only admins see the workers and queues"


async def test_the_backlog_counts_tasks_queued_while_no_worker_runs(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    # A worker binds the summary consumers (as `migrate` would), then leaves: nothing serves them.
    async with running_worker(
        stack, options=with_options(types=("summary",)), settings=beating_every_second(stack)
    ):
        pass

    def high_summaries(body: dict[str, Any]) -> dict[str, Any]:
        return next(
            q for q in body["backlog"] if (q["task_type"], q["priority"]) == ("summary", "high")
        )

    before = high_summaries(await view(api))["pending"]
    for _ in range(3):
        create(stack, "summary", {"content": "The tide came in."}, priority="high")

    body = await wait_for_value(
        lambda: view(api),
        lambda b: (
            high_summaries(b)["pending"] == before + 3
            and b["oldest_pending_age_seconds"] is not None
        ),
        30,
        every=0.1,
    )
    assert high_summaries(body)["in_flight"] == 0
    assert body["backlog_error"] is None
    assert len(body["backlog"]) == 20  # every (type, priority), the unbound ones at 0
    assert body["oldest_pending_age_seconds"] >= 0


async def test_the_tables_are_there_before_any_worker(stack: Stack) -> None:
    """`migrate` and the API create the heartbeats table (bootstrap.ensure_read_models)."""
    await asyncio.to_thread(bootstrap.ensure_read_models, stack.database_url)
    assert stack.rows("SELECT to_regclass('worker_heartbeats') IS NOT NULL") == [(True,)]


async def test_a_worker_silent_past_the_lost_threshold_shows_lost(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(stack.database_url, min_size=1, open=False)
    await pool.open()
    try:
        silent = Heartbeats(pool, WorkerIdentity("host:9:silent", ("research",), 2), every=1)
        await silent.beat([])
        assert worker_in(await view(api), "host:9:silent")["state"] == "alive"  # type: ignore[index]
        # As if it had died a minute ago (AGENTTASKS_WORKER_LOST_SECONDS defaults to 30).
        async with pool.connection() as connection:
            await connection.execute(
                "UPDATE worker_heartbeats SET last_heartbeat = now() - interval '60 seconds' "
                "WHERE worker_id = 'host:9:silent'"
            )
    finally:
        await pool.close()
    body = await view(api)
    assert worker_in(body, "host:9:silent")["state"] == "lost"  # type: ignore[index]
    assert body["counts"]["lost"] >= 1
