"""The API receives task events only while a live stream is open, and loses none for it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from agenttasks.servers.nats import EmbeddedNats
from tests.integration.api_client import bearer
from tests.integration.live_harness import BASE, read_sse, running_live_api
from tests.integration.test_websocket import socket_url
from tests.waiting import wait_until

ALICE = bearer("alice")
URL = f"{BASE}/tasks/stream/"


async def test_no_stream_open_no_event_received_and_a_resume_across_the_quiet_misses_nothing(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async with running_live_api(database_url, nats_server) as live:
        hub = live.deps.live.hub
        first = await live.new_task("alice")
        await live.stack.projected()  # relayed, and long past the API's NATS connection
        assert (hub.listening, hub.position) == (False, 0), "no stream: no event taken in"

        before: list[dict[str, Any]] = []
        async with live.client.stream("GET", f"{URL}?after=0", headers=ALICE) as response:
            reader = asyncio.create_task(read_sse(response, before))
            live.commands.start(first, 1, "w1")  # live, after the response head
            expected = live.positions_of(first)
            await wait_until(lambda: len(before) >= len(expected))
            reader.cancel()
        assert [m["id"] for m in before] == expected
        await wait_until(lambda: not hub.listening)  # the last stream closed: NATS dropped

        # Committed while no consumer exists: a resume reads them from the store.
        live.commands.report_progress(first, 1, 50, "half")
        second = await live.new_task("alice")
        resumed: list[dict[str, Any]] = []
        headers = {**ALICE, "Last-Event-ID": str(expected[-1])}
        async with live.client.stream("GET", URL, headers=headers) as response:
            reader = asyncio.create_task(read_sse(response, resumed))
            live.commands.complete(first, 1, {"summary": "done"})  # live again
            everything = live.positions_of(first, second)
            await wait_until(lambda: len(resumed) >= len(everything) - len(expected))
            reader.cancel()
        assert hub.position > 0
    assert [m["id"] for m in resumed] == everything[len(expected) :], "no gap, no repeat"


async def test_a_stream_opened_while_nats_is_down_is_a_503_and_opens_once_it_is_back(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    # The consumer starts with the first stream: when NATS cannot be asked then, the client is
    # told so in our words (never a 500), and the next try after NATS is back gets its stream.
    async with running_live_api(database_url, nats_server) as live:
        hub = live.deps.live.hub
        assert not hub.listening
        nats_server.stop()
        try:
            refused = await live.client.get(URL, headers=ALICE)
            assert refused.status_code == 503, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.headers["retry-after"] == "5"
            assert refused.json()["detail"].startswith("live updates are unavailable")
            async with connect(socket_url(live)) as socket:
                said = json.loads(await socket.recv())
                assert said["type"] == "error"
                assert said["message"].startswith("live updates are unavailable")
                with pytest.raises(ConnectionClosed) as closed:
                    await socket.recv()
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == 1013
        finally:
            nats_server.restart()

        async def opens() -> bool:  # once the API's NATS connection is back
            async with live.client.stream("GET", URL, headers=ALICE) as response:
                return response.status_code == 200

        await wait_until(opens, within=30)
        task = await live.new_task("alice")
        received: list[dict[str, Any]] = []
        async with live.client.stream("GET", f"{URL}?after=0", headers=ALICE) as response:
            assert response.status_code == 200
            reader = asyncio.create_task(read_sse(response, received))
            await wait_until(lambda: len(received) >= len(live.positions_of(task)))
            reader.cancel()
