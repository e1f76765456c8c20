"""A thousand clients that vanish without a goodbye leave nothing behind in the API process."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from collections.abc import Awaitable, Callable

from agenttasks.api.auth import mint_token
from agenttasks.bus.messages import STREAM
from agenttasks.servers.nats import EmbeddedNats
from tests.integration.api_client import SECRET
from tests.integration.live_harness import BASE, LiveApi, running_live_api
from tests.waiting import wait_for_value

CLIENTS = 1_000
AT_ONCE = 100


async def open_and_hold(port: int, request: bytes, expect: bytes) -> asyncio.StreamWriter:
    """Sends `request` and waits for the response head (the server has registered the client)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    assert head.startswith(expect), head[:80]
    return writer


def drop_abruptly(writer: asyncio.StreamWriter) -> None:
    """Closes with a TCP reset: no FIN, no close frame, as when a laptop lid shuts."""
    raw: socket.socket = writer.get_extra_info("socket")
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def sse_request(path: str, token: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: api\r\nAccept: text/event-stream\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()


def websocket_request(token: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /ws/tasks/?token={token} HTTP/1.1\r\nHost: api\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def in_batches(
    count: int, open_one: Callable[[int], Awaitable[asyncio.StreamWriter]]
) -> list[asyncio.StreamWriter]:
    writers: list[asyncio.StreamWriter] = []
    for start in range(0, count, AT_ONCE):
        batch = range(start, min(count, start + AT_ONCE))
        writers += await asyncio.gather(*(open_one(i) for i in batch))
    return writers


async def resources(live: LiveApi, nats_server: EmbeddedNats) -> dict[str, int]:
    """What a leak would show as: hub subscribers and index entries, the API's NATS
    subscriptions, the stream's consumers, and the tasks on the API's event loop."""
    from agenttasks.bus.connection import connect

    assert live.deps.live is not None
    assert live.deps.bus is not None
    bus = await connect(nats_server.url_for("relay"), "check")
    try:
        consumers = (await bus.js.stream_info(STREAM)).state.consumer_count
    finally:
        await bus.close()
    return {
        "open stream slots": live.deps.live.slots.total,
        "hub subscribers": live.deps.live.hub.subscriber_count,
        "hub index entries": live.deps.live.hub.index_size(),
        "api NATS subscriptions": len(live.deps.bus.nc._subs),
        "stream consumers": consumers,
        "server asyncio tasks": await live.server_task_count(),
    }


async def steady(live: LiveApi, nats_server: EmbeddedNats) -> dict[str, int]:
    """The resources once two readings in a row agree (nothing is still starting up)."""
    readings: list[dict[str, int]] = []

    async def last_two() -> list[dict[str, int]]:
        readings.append(await resources(live, nats_server))
        return readings[-2:]

    def agree(pair: list[dict[str, int]]) -> bool:
        return len(pair) == 2 and pair[0] == pair[1]

    return (await wait_for_value(last_two, agree, 30, every=0.1))[-1]


async def back_to(
    live: LiveApi, nats_server: EmbeddedNats, baseline: dict[str, int], kind: str
) -> None:
    """Waits until the resources are back at `baseline`; fails after 30 s with the last reading."""

    async def reading() -> tuple[str, dict[str, int]]:
        return kind, await resources(live, nats_server)

    def at_baseline(now: tuple[str, dict[str, int]]) -> bool:
        return now[1] == baseline

    # Each reading opens a NATS connection: poll gently.
    await wait_for_value(reading, at_baseline, 30, every=0.1)


async def test_a_thousand_abrupt_disconnects_leave_no_subscriber_consumer_task_or_queue(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async with running_live_api(database_url, nats_server, keepalive=60) as live:
        alice = mint_token(SECRET, "alice")
        assert live.deps.live is not None
        live.deps.live.slots.limit = CLIENTS  # one user holds them all: lift the per-user cap
        task_id = await live.new_task("alice")
        live.commands.start(task_id, 1, "w1")
        await live.stack.projected()
        bus = live.deps.bus
        assert bus is not None
        # nats-py opens one reply inbox (a subscription and its task) on the first request and
        # keeps it: made here, so the baseline holds it. The hub itself holds no subscription
        # while no stream is open, and must be back to none once they are all gone.
        await live.in_server(lambda: bus.js.stream_info(STREAM))
        baseline = await steady(live, nats_server)
        assert live.deps.live.hub.listening is False

        def open_sse(i: int) -> Awaitable[asyncio.StreamWriter]:
            path = f"{BASE}/tasks/stream/" if i % 2 else f"{BASE}/tasks/{task_id}/stream/"
            return open_and_hold(live.port, sse_request(path, alice), b"HTTP/1.1 200")

        def open_socket(_: int) -> Awaitable[asyncio.StreamWriter]:
            return open_and_hold(live.port, websocket_request(alice), b"HTTP/1.1 101")

        steps = iter(range(1, 100))
        for kind, opener in (("SSE", open_sse), ("WebSocket", open_socket)):
            writers = await in_batches(CLIENTS, opener)
            assert live.subscribers() == CLIENTS, kind
            # Updates are in flight (and buffered for some clients) when they vanish.
            for progress in (next(steps), next(steps), next(steps)):
                live.commands.report_progress(task_id, 1, progress, f"at {progress}")
            for writer in writers:
                drop_abruptly(writer)
            await back_to(live, nats_server, baseline, kind)
