"""WebSocket /ws/tasks/: every update of the user's tasks, subscribe/unsubscribe, bad messages."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from agenttasks.api.auth import mint_token
from agenttasks.servers.nats import EmbeddedNats
from tests.integration.api_client import SECRET
from tests.integration.live_harness import LiveApi, running_live_api
from tests.waiting import wait_until


@pytest.fixture
async def live(database_url: str, nats_server: EmbeddedNats) -> AsyncIterator[LiveApi]:
    async with running_live_api(database_url, nats_server) as api:
        yield api


def socket_url(live: LiveApi, user: str = "alice", query: str = "") -> str:
    return f"ws://127.0.0.1:{live.port}/ws/tasks/?token={mint_token(SECRET, user)}{query}"


async def receive(socket: ClientConnection, within: float = 10) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), within))
    return message


async def updates_until(
    socket: ClientConnection, done: Any, into: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Receives messages until `done(messages)` holds."""
    messages = into if into is not None else []
    while not done(messages):
        messages.append(await receive(socket))
    return messages


async def test_a_socket_receives_every_update_of_the_users_tasks_and_nobody_elses(
    live: LiveApi,
) -> None:
    async with connect(socket_url(live)) as socket:
        await wait_until(lambda: live.subscribers() == 1)
        mine, theirs = await live.new_task("alice"), await live.new_task("bob")
        live.commands.start(theirs, 1, "w1")
        live.commands.start(mine, 1, "w1")
        live.commands.report_progress(mine, 1, 40, "at 40")
        expected = live.positions_of(mine)
        received = await updates_until(socket, lambda m: len(m) >= len(expected))
    assert [m["position"] for m in received] == expected
    assert {m["task_id"] for m in received} == {str(mine)}
    assert received[-1]["update_type"] == "progress"
    assert received[-1]["progress"] == 40


async def test_subscribing_narrows_to_the_task_with_its_history_then_live_and_unsubscribe_stops_it(
    live: LiveApi,
) -> None:
    chosen, other = await live.new_task("alice"), await live.new_task("alice")
    live.commands.start(chosen, 1, "w1")
    async with connect(socket_url(live)) as socket:
        await socket.send(json.dumps({"action": "subscribe", "task_id": str(chosen)}))
        history = await updates_until(socket, lambda m: m and m[-1].get("type") == "subscribed")
        assert [m["position"] for m in history[:-1]] == live.positions_of(chosen)
        assert history[-1] == {
            "type": "subscribed",
            "task_id": str(chosen),
            "position": history[-2]["position"],
        }
        live.commands.start(other, 1, "w1")  # not subscribed: not sent
        live.commands.report_progress(chosen, 1, 70, "at 70")
        update = await receive(socket)
        assert (update["task_id"], update["progress"]) == (str(chosen), 70)

        await socket.send(json.dumps({"action": "unsubscribe", "task_id": str(chosen)}))
        assert await receive(socket) == {"type": "unsubscribed", "task_id": str(chosen)}
        live.commands.complete(chosen, 1, {"summary": "done"})
        await socket.send(json.dumps({"action": "subscribe", "task_id": str(other), "after": 0}))
        after = await updates_until(socket, lambda m: m and m[-1].get("type") == "subscribed")
        assert {m["task_id"] for m in after} == {str(other)}, "nothing of the dropped task"


async def test_a_resumed_subscription_sends_only_what_follows_its_position(live: LiveApi) -> None:
    task_id = await live.new_task("alice")
    live.commands.start(task_id, 1, "w1")
    live.commands.report_progress(task_id, 1, 20, "at 20")
    positions = live.positions_of(task_id)
    async with connect(socket_url(live)) as socket:
        message = {"action": "subscribe", "task_id": str(task_id), "after": positions[0]}
        await socket.send(json.dumps(message))
        history = await updates_until(socket, lambda m: m and m[-1].get("type") == "subscribed")
    assert [m["position"] for m in history[:-1]] == positions[1:]


async def test_bad_messages_get_an_error_and_the_socket_stays_open(live: LiveApi) -> None:
    theirs = await live.new_task("bob")
    mine = await live.new_task("alice")
    bad = [
        "not json",
        json.dumps({"action": "dance"}),
        json.dumps({"action": "subscribe"}),
        json.dumps({"action": "subscribe", "task_id": "nope"}),
        json.dumps({"action": "subscribe", "task_id": str(mine), "extra": 1}),
        json.dumps({"action": "subscribe", "task_id": str(mine), "after": -1}),
        json.dumps({"action": "unsubscribe", "task_id": str(mine)}),
        json.dumps({"action": "subscribe", "task_id": str(theirs)}),
    ]
    async with connect(socket_url(live)) as socket:
        for text in bad:
            await socket.send(text)
            reply = await receive(socket)
            assert reply["type"] == "error", (text, reply)
            assert reply["message"]
        assert reply["message"] == f"no such task {theirs}"
        await socket.send(b"\x00\xff binary")
        assert (await receive(socket))["type"] == "error"
        await socket.send(json.dumps({"action": "subscribe", "task_id": str(mine)}))
        replies = await updates_until(socket, lambda m: m and m[-1].get("type") == "subscribed")
    assert [m["position"] for m in replies[:-1]] == live.positions_of(mine)


async def test_another_users_task_is_refused_like_a_missing_one(live: LiveApi) -> None:
    theirs = await live.new_task("bob")
    async with connect(socket_url(live)) as socket:
        await socket.send(json.dumps({"action": "subscribe", "task_id": str(theirs)}))
        reply = await receive(socket)
        live.commands.start(theirs, 1, "w1")
        mine = await live.new_task("alice")
        nxt = await receive(socket)
    assert reply == {"type": "error", "message": f"no such task {theirs}"}
    assert nxt["task_id"] == str(mine), "bob's update never arrives"


async def test_a_socket_without_a_valid_token_is_told_why_and_closed(live: LiveApi) -> None:
    url = f"ws://127.0.0.1:{live.port}/ws/tasks/"
    for query in ("", "?token=forged"):
        async with connect(url + query) as socket:
            reply = await receive(socket)
            assert reply["type"] == "error"
            with pytest.raises(ConnectionClosed) as closed:
                await socket.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4401
    assert live.subscribers() == 0


async def test_the_token_may_come_in_a_cookie_and_after_resumes_all_tasks(live: LiveApi) -> None:
    task_id = await live.new_task("alice")
    live.commands.start(task_id, 1, "w1")
    cookie = {"Cookie": f"agenttasks_token={mint_token(SECRET, 'alice')}"}
    url = f"ws://127.0.0.1:{live.port}/ws/tasks/?after=0"
    # A browser sends the cookie with the page's Origin; the service's own is allowed.
    origin = f"http://127.0.0.1:{live.port}"
    async with connect(url, additional_headers=cookie, origin=origin) as socket:
        expected = live.positions_of(task_id)
        received = await updates_until(socket, lambda m: len(m) >= len(expected))
    assert [m["position"] for m in received] == expected
