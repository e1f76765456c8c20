"""The per-task SSE stream: history then live, resume without gap or repeat, isolation, the end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import pytest

from agenttasks.api.auth import mint_token
from agenttasks.bus.messages import STREAM
from agenttasks.servers.nats import EmbeddedNats
from tests.integration.api_client import SECRET, Api, bearer, running_api
from tests.integration.live_harness import read_sse, running_live_api
from tests.waiting import wait_for_value, wait_until

BASE = "/api/v1/utils"
ALICE = bearer("alice")


@pytest.fixture
async def api(database_url: str, nats_server: EmbeddedNats) -> AsyncIterator[Api]:
    async with running_api(database_url, nats_server) as api:
        yield api


async def new_task(api: Api) -> UUID:
    body = {"title": "streamed", "task_type": "summary", "task_config": {"content": "x"}}
    response = await api.client.post(f"{BASE}/ai-tasks/", json=body, headers=ALICE)
    return UUID(response.json()["id"])


async def test_a_stream_sends_history_then_live_updates_and_ends_with_the_task(api: Api) -> None:
    task_id = await new_task(api)
    commands = api.stack.commands
    commands.start(task_id, 1, "w1")
    received: list[dict[str, Any]] = []
    frames: list[str] = []
    url = f"{BASE}/tasks/{task_id}/stream/"
    async with api.client.stream("GET", url, headers=ALICE) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = asyncio.create_task(read_sse(response, received, frames))
        await wait_until(lambda: len(received) == 2)  # created and started: the history
        commands.report_progress(task_id, 1, 60, "More than half")
        commands.complete(task_id, 1, {"summary": "done"})
        await asyncio.wait_for(reader, 10)  # the server ends the stream after completion

    assert [m["data"]["type"] for m in received] == ["created", "started", "progress", "completed"]
    assert [m["id"] for m in received] == [m["data"]["position"] for m in received]
    assert received[2]["data"]["progress"] == 60
    assert received[2]["data"]["update_type"] == "progress"
    assert received[3]["data"]["status"] == "completed"
    assert not any(f.startswith("event:") for f in frames), "plain messages fire onmessage"


async def test_reconnecting_with_last_event_id_continues_without_gap_or_repeat(api: Api) -> None:
    task_id = await new_task(api)
    commands = api.stack.commands
    commands.start(task_id, 1, "w1")
    for progress in (10, 20, 30):
        commands.report_progress(task_id, 1, progress, f"at {progress}")
    first: list[dict[str, Any]] = []
    url = f"{BASE}/tasks/{task_id}/stream/"
    async with api.client.stream("GET", url, headers=ALICE) as response:
        reader = asyncio.create_task(read_sse(response, first, []))
        await wait_until(lambda: len(first) >= 3)
        reader.cancel()  # the client drops mid-task
    last_seen = first[-1]["id"]
    for progress in (40, 50):
        commands.report_progress(task_id, 1, progress, f"at {progress}")
    commands.complete(task_id, 1, {"summary": "done"})

    second: list[dict[str, Any]] = []
    headers = {**ALICE, "Last-Event-ID": str(last_seen)}
    async with api.client.stream("GET", url, headers=headers) as response:
        await asyncio.wait_for(read_sse(response, second, []), 10)

    together = [m["id"] for m in first + second]
    stored = [e.position for e in commands.history(commands_actor(), task_id)]
    assert together == stored, "every update exactly once, in order"


def commands_actor() -> Any:
    from agenttasks.application.tasks import SYSTEM

    return SYSTEM


async def test_a_finished_task_streams_its_history_and_the_end(api: Api) -> None:
    task_id = await new_task(api)
    api.stack.commands.cancel(commands_actor(), task_id)
    received: list[dict[str, Any]] = []
    async with api.client.stream(
        "GET", f"{BASE}/tasks/{task_id}/stream/?after=0", headers=ALICE
    ) as response:
        await asyncio.wait_for(read_sse(response, received, []), 10)
    assert [m["data"]["type"] for m in received] == ["created", "cancelled"]


async def test_the_token_may_come_in_the_query_and_another_users_task_is_404(api: Api) -> None:
    task_id = await new_task(api)
    api.stack.commands.cancel(commands_actor(), task_id)
    alice = mint_token(SECRET, "alice")
    mine = await api.client.get(f"{BASE}/tasks/{task_id}/stream/?token={alice}")
    assert mine.status_code == 200
    bob = mint_token(SECRET, "bob")
    theirs = await api.client.get(f"{BASE}/tasks/{task_id}/stream/?token={bob}")
    assert theirs.status_code == 404
    assert theirs.headers["content-type"].startswith("application/problem+json")
    assert (await api.client.get(f"{BASE}/tasks/{task_id}/stream/")).status_code == 401


async def test_an_idle_stream_sends_keep_alive_comments_and_a_dropped_client_frees_its_place(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async with running_live_api(database_url, nats_server) as live:
        # With no stream open the API holds no consumer: only the projector's.
        await wait_for_value(lambda: stream_consumers(nats_server), only_one, every=0.05)
        task_id = await live.new_task()
        frames: list[str] = []
        urls = [f"{BASE}/tasks/{task_id}/stream/", f"{BASE}/tasks/stream/"]
        async with (
            live.client.stream("GET", urls[0], headers=ALICE) as one,
            live.client.stream("GET", urls[1], headers=ALICE) as all_tasks,
        ):
            readers = [
                asyncio.create_task(read_sse(one, [], frames)),
                asyncio.create_task(read_sse(all_tasks, [], [])),
            ]
            await wait_until(lambda: any(f.startswith(": keep-alive") for f in frames), 10)
            assert live.subscribers() == 2
            # One for the projector and one for this API process's hub, however many
            # streams are open.
            assert await stream_consumers(nats_server) == 2, "no consumer per stream"
            for reader in readers:
                reader.cancel()
        await wait_until(lambda: live.subscribers() == 0, 10)
        assert live.deps.live is not None
        assert live.deps.live.hub.index_size() == 0
        # The last stream gone, the hub's consumer goes too.
        await wait_for_value(lambda: stream_consumers(nats_server), only_one, every=0.05)


def only_one(count: int) -> bool:
    return count == 1


async def stream_consumers(nats_server: EmbeddedNats) -> int:
    from agenttasks.bus.connection import connect

    bus = await connect(nats_server.url_for("relay"), "check")
    try:
        return (await bus.js.stream_info(STREAM)).state.consumer_count
    finally:
        await bus.close()
