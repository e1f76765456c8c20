"""Issue 11, finding 6: integer parameters, open streams and catch-ups are bounded.

Each test here failed on the code before the change: `?page=10**20` was a 500, a user could
open any number of streams, and a catch-up from position 0 replayed the whole log (of every
user) whatever its length.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any
from uuid import UUID

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from agenttasks.api.auth import mint_token
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.settings import Settings, SettingsError
from tests.integration.api_client import SECRET, bearer
from tests.integration.live_harness import LiveApi, running_live_api
from tests.waiting import wait_until

BASE = "/api/v1/utils"
HUGE = 10**20


@pytest.fixture
async def live(database_url: str, nats_server: EmbeddedNats) -> AsyncIterator[LiveApi]:
    async with running_live_api(database_url, nats_server) as api:
        yield api


async def close_code(socket: ClientConnection) -> int:
    """Reads until the server closes the socket; the close code it sent."""
    try:
        while True:
            await asyncio.wait_for(socket.recv(), 10)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else -1


def assert_problem(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    for word in words:
        assert word in response.json()["detail"]


async def test_every_integer_query_parameter_is_bounded_with_a_400_naming_it(
    live: LiveApi,
) -> None:
    task_id = await live.new_task("alice")
    cases = [
        ("/ai-tasks/", "page"),
        ("/ai-tasks/", "page_size"),
        ("/ai-tasks/active/", "page"),
        ("/ai-tasks/recent/", "page_size"),
        (f"/ai-tasks/{task_id}/updates/", "after"),
        (f"/ai-tasks/{task_id}/updates/", "page"),
        (f"/ai-tasks/{task_id}/updates/", "page_size"),
        (f"/ai-tasks/{task_id}/events/", "page"),
        (f"/ai-tasks/{task_id}/events/", "page_size"),
        ("/ai-task-templates/", "page"),
        ("/ai-task-templates/popular/", "limit"),
        (f"/tasks/{task_id}/stream/", "after"),
        ("/tasks/stream/", "after"),
    ]
    for path, name in cases:
        for value in (HUGE, -1):
            response = await live.client.get(
                f"{BASE}{path}", params={name: value}, headers=bearer("alice")
            )
            assert_problem(response, 400, f"`{name}`")
    response = await live.client.get(
        f"{BASE}/tasks/stream/", headers={**bearer("alice"), "Last-Event-ID": str(HUGE)}
    )
    assert_problem(response, 400, "header parameter `last-event-id`")


async def test_a_websocket_subscribe_with_a_huge_after_is_an_error_message(live: LiveApi) -> None:
    task_id = await live.new_task("alice")
    url = f"ws://127.0.0.1:{live.port}/ws/tasks/?token={mint_token(SECRET, 'alice')}"
    async with connect(url) as socket:
        await socket.send(
            json.dumps({"action": "subscribe", "task_id": str(task_id), "after": HUGE})
        )
        reply = json.loads(await asyncio.wait_for(socket.recv(), 10))
    assert reply["type"] == "error"
    assert "`after`" in reply["message"]


def test_the_stream_settings_are_read_and_bounded() -> None:
    settings = Settings.from_env(
        {
            "AGENTTASKS_MAX_STREAMS_PER_USER": "3",
            "AGENTTASKS_MAX_CATCH_UP_EVENTS": "500",
            "AGENTTASKS_CORS_ORIGINS": "https://App.example.com/, http://localhost:5173",
        }
    )
    assert settings.max_streams_per_user == 3
    assert settings.max_catch_up_events == 500
    assert settings.cors_origins == {"https://app.example.com", "http://localhost:5173"}
    assert Settings.from_env({}).max_streams_per_user == 20
    for name, value in (
        ("AGENTTASKS_MAX_STREAMS_PER_USER", "0"),
        ("AGENTTASKS_MAX_CATCH_UP_EVENTS", "10"),
        ("AGENTTASKS_CORS_ORIGINS", "app.example.com"),
        ("AGENTTASKS_CORS_ORIGINS", "https://app.example.com/path"),
    ):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: value})


async def test_open_streams_per_user_are_capped_and_a_closed_stream_frees_its_slot(
    live: LiveApi,
) -> None:
    assert live.deps.live is not None
    slots = live.deps.live.slots
    slots.limit = 3
    task_id = await live.new_task("alice")
    url = f"ws://127.0.0.1:{live.port}/ws/tasks/?token={mint_token(SECRET, 'alice')}"
    async with AsyncExitStack() as held:
        # One of each kind: a task's SSE stream, the all-tasks stream, a WebSocket.
        for path in (f"/tasks/{task_id}/stream/", "/tasks/stream/"):
            response = await held.enter_async_context(
                live.client.stream("GET", f"{BASE}{path}", headers=bearer("alice"))
            )
            assert response.status_code == 200
        socket = await held.enter_async_context(connect(url))
        await wait_until(lambda: slots.held("alice") == 3)

        refused = await live.client.get(f"{BASE}/tasks/stream/", headers=bearer("alice"))
        assert_problem(refused, 429, "at most 3")
        async with connect(url) as extra:
            code = await close_code(extra)
        assert code == 4429
        async with live.client.stream(
            "GET", f"{BASE}/tasks/stream/", headers=bearer("bob")
        ) as other:
            assert other.status_code == 200  # the cap is per user

        await socket.close()
        await wait_until(lambda: slots.held("alice") == 2)
        async with live.client.stream(
            "GET", f"{BASE}/tasks/stream/", headers=bearer("alice")
        ) as again:
            assert again.status_code == 200
    await wait_until(lambda: slots.total == 0)
    assert live.subscribers() == 0


async def read_frames(lines: AsyncIterator[str], count: int) -> list[dict[str, Any]]:
    """The next `count` SSE messages from a stream's lines: id, event name (if any) and data."""
    frames: list[dict[str, Any]] = []
    message: dict[str, Any] = {}
    async for line in lines:
        if line.startswith("id: "):
            message["id"] = int(line[4:])
        elif line.startswith("event: "):
            message["event"] = line[7:]
        elif line.startswith("data: "):
            message["data"] = json.loads(line[6:])
        elif line == "" and message:
            frames.append(message)
            message = {}
            if len(frames) == count:
                break
    return frames


async def busy_task(live: LiveApi, user: str, events: int) -> UUID:
    task_id = await live.new_task(user)
    live.commands.start(task_id, 1, "w1")
    for step in range(events):
        live.commands.report_progress(task_id, 1, step + 1, f"step {step}")
    return task_id


async def test_a_catch_up_counts_only_the_users_own_events_and_beyond_the_cap_says_resync(
    live: LiveApi,
) -> None:
    assert live.deps.live is not None
    live.deps.live.max_catch_up_events = 10
    mine = await busy_task(live, "alice", 2)
    await busy_task(live, "bob", 30)  # bob's history alone is over the cap

    # Alice's history is short: all of it comes, bob's long one does not get in the way.
    async with live.client.stream(
        "GET", f"{BASE}/tasks/stream/?after=0", headers=bearer("alice")
    ) as response:
        lines = response.aiter_lines()
        frames = await read_frames(lines, len(live.positions_of(mine)))
    assert [f["id"] for f in frames] == live.positions_of(mine)
    assert all("event" not in f for f in frames)

    # A task created after that catch-up is in the next one: the owner index keeps up.
    newer = await busy_task(live, "alice", 1)
    async with live.client.stream(
        "GET", f"{BASE}/tasks/stream/?after=0", headers=bearer("alice")
    ) as response:
        lines = response.aiter_lines()
        frames = await read_frames(lines, len(live.positions_of(mine, newer)))
    assert [f["id"] for f in frames] == live.positions_of(mine, newer)

    # Bob's is not replayed: a resync at the newest position, then live updates after it.
    newest = live.stack.store.recorder.max_notification_id()
    async with live.client.stream(
        "GET", f"{BASE}/tasks/stream/?after=0", headers=bearer("bob")
    ) as response:
        lines = response.aiter_lines()
        (resync,) = await read_frames(lines, 1)
        assert resync["event"] == "resync"
        assert resync["id"] == newest
        assert resync["data"]["position"] == newest
        later = await busy_task(live, "bob", 0)
        following = await read_frames(lines, 1)
    assert following[0]["data"]["task_id"] == str(later)

    # An admin's catch-up covers everyone: over the cap too.
    async with live.client.stream(
        "GET", f"{BASE}/tasks/stream/", headers={**bearer("root", admin=True), "Last-Event-ID": "0"}
    ) as response:
        lines = response.aiter_lines()
        (resync,) = await read_frames(lines, 1)
    assert resync["event"] == "resync"


async def test_a_long_task_history_is_a_resync_on_its_stream_and_on_a_subscribe(
    live: LiveApi,
) -> None:
    assert live.deps.live is not None
    live.deps.live.max_catch_up_events = 10
    task_id = await busy_task(live, "alice", 20)
    newest = live.stack.store.recorder.max_notification_id()
    async with live.client.stream(
        "GET", f"{BASE}/tasks/{task_id}/stream/", headers=bearer("alice")
    ) as response:
        lines = response.aiter_lines()
        (resync,) = await read_frames(lines, 1)
        assert (resync["event"], resync["id"]) == ("resync", newest)
        live.commands.report_progress(task_id, 1, 99, "after the resync")
        (update,) = await read_frames(lines, 1)
    assert update["data"]["progress"] == 99

    url = f"ws://127.0.0.1:{live.port}/ws/tasks/?token={mint_token(SECRET, 'alice')}"
    async with connect(url) as socket:
        await socket.send(json.dumps({"action": "subscribe", "task_id": str(task_id)}))
        replies = [json.loads(await asyncio.wait_for(socket.recv(), 10)) for _ in range(2)]
    newest = live.stack.store.recorder.max_notification_id()
    assert replies[0]["type"] == "resync"
    assert replies[0]["task_id"] == str(task_id)
    assert replies[0]["position"] == newest
    assert replies[1] == {"type": "subscribed", "task_id": str(task_id), "position": newest}
