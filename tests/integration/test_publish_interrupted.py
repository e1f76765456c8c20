"""One ack per batch (bus/publisher.py) when a batch is cut off in the middle: the stream keeps a
dense prefix of it, in order and once, and publishing again from `last_published` completes it.

Only the batch's last message asks for an ack; the Nats-Expected-Last-Msg-Id chain is what keeps
a message that got through after a lost one out of the stream. These cut a long batch off where
it hurts: the connection cut mid-message (nats-py then sends what it buffered meanwhile on the
new connection), and the publishing process killed with SIGKILL mid-batch.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest

from agenttasks.bus import publisher
from agenttasks.bus.connection import Bus, connect
from agenttasks.bus.messages import STREAM, TaskEvent, decode
from agenttasks.bus.publisher import PublishFailed
from agenttasks.servers.nats import EmbeddedNats
from tests.waiting import wait_until

# nats-py hands its buffer to the socket without yielding until 2 MB are pending, so only a
# batch bigger than that is still being written when the connection breaks: 1,500 messages of
# ~16 kB (~24 MB) are, and what it writes while reconnecting reaches the server after a gap.
BATCH = 1500
BLOB = "x" * 16_000
ROOT = Path(__file__).resolve().parents[2]


def event(position: int) -> TaskEvent:
    return TaskEvent(
        position=position,
        task_id=str(UUID(int=position)),
        type="created",
        version=1,
        timestamp=datetime(2026, 12, 1, tzinfo=UTC),
        user="alice",
        task_type="summary",
        priority="normal",
        update_type="status",
        status="pending",
        progress=0,
        message="",
        data={"blob": BLOB},
    )


async def stored(bus: Bus) -> int:
    return int((await bus.js.stream_info(STREAM)).state.last_seq)


async def positions(bus: Bus) -> list[int]:
    """The positions of every message in the stream, by stream sequence."""
    last = await stored(bus)
    found: list[int] = []
    for start in range(1, last + 1, 200):  # requests pipelined, 200 at a time
        messages = await asyncio.gather(
            *(bus.js.get_msg(STREAM, seq=s) for s in range(start, min(start + 200, last + 1)))
        )
        for message in messages:
            payload = decode(message.data or b"")
            assert isinstance(payload, TaskEvent)
            assert message.headers
            assert message.headers["Nats-Msg-Id"] == f"agenttasks:{payload.position}"
            found.append(payload.position)
    return found


async def resume_and_check(bus: Bus) -> None:
    """After the cut: a dense prefix 1..k, once each; publishing the rest gives 1..BATCH.

    A killed publisher's socket may still hand the server what it had sent (the kernel sends
    it on), so the stream can grow while this reads: each read is checked on its own.
    """
    prefix = await positions(bus)
    assert prefix == list(range(1, len(prefix) + 1)), "a dense prefix, in order, no repeat"
    position, sequence = await bus.last_published()
    assert position >= len(prefix)
    rest = [event(p) for p in range(position + 1, BATCH + 1)]
    assert await bus.publish_in_order(rest, sequence) == BATCH
    assert await positions(bus) == list(range(1, BATCH + 1))


class CuttingProxy:
    """A TCP proxy in front of nats-server that cuts its first connection after `limit` bytes
    from the client (mid-message) and passes every later connection through untouched."""

    def __init__(self, upstream_port: int, limit: int) -> None:
        self.upstream_port = upstream_port
        self.limit = limit
        self.connections = 0
        self.cut = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for pipe in self._pipes:
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        limit = self.limit if self.connections == 1 else None
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer, limit)),
            asyncio.create_task(self._pipe(up_reader, writer, None)),
        ]
        self._pipes.update(pipes)
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for pipe in pipes:
            pipe.cancel()
        for side in (writer, up_writer):
            side.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limit: int | None
    ) -> None:
        passed = 0
        while data := await reader.read(65536):
            if limit is not None and passed + len(data) >= limit:
                writer.write(data[: limit - passed])  # the message it ends in is cut short
                await writer.drain()
                self.cut.set()
                return
            passed += len(data)
            writer.write(data)
            await writer.drain()


async def test_a_connection_cut_mid_batch_stores_a_dense_prefix_and_publishing_resumes(
    nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publisher, "ACK_TIMEOUT_SECONDS", 1.0)  # if the one ack is lost too
    # The cut loses what was in flight; nats-py keeps publishing into its buffer while it
    # reconnects and sends that on: messages from after a gap, which must not be stored.
    proxy = CuttingProxy(nats_server.port, limit=3_000_000)
    port = await proxy.start()
    url = nats_server.url_for("relay").replace(f":{nats_server.port}", f":{port}")
    relay = await connect(url, "test-publish-relay")
    try:
        await relay.ensure_stream()
        before = proxy.connections
        with pytest.raises(PublishFailed):  # messages were lost: the batch cannot succeed
            await relay.publish_in_order([event(p) for p in range(1, BATCH + 1)], 0)
        assert proxy.cut.is_set()
        # Whatever nats-py buffered while away has reached the server: a round trip after it.
        await wait_until(lambda: relay.nc.is_connected and proxy.connections > before)
        await relay.nc.flush()
        await resume_and_check(relay)
    finally:
        await relay.close()
        await proxy.close()


async def _at_least(bus: Bus, count: int) -> bool:
    return await stored(bus) >= count


PUBLISHER = """
import asyncio, sys
from tests.integration.test_publish_interrupted import BATCH, event
from agenttasks.bus.connection import connect

async def main() -> None:
    bus = await connect(sys.argv[1], "test-publish-killed")
    await bus.publish_in_order([event(p) for p in range(1, BATCH + 1)], 0)
    print("finished", flush=True)

asyncio.run(main())
"""


async def test_a_publisher_killed_mid_batch_leaves_a_dense_prefix_and_a_new_one_resumes(
    nats_server: EmbeddedNats,
) -> None:
    bus = await connect(nats_server.url_for("relay"), "test-publish-next")
    try:
        await bus.ensure_stream()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            PUBLISHER,
            nats_server.url_for("relay"),
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await wait_until(lambda: _at_least(bus, 1), 30, every=0.001)
            process.send_signal(signal.SIGKILL)
        finally:
            if process.returncode is None:
                process.kill()
            out, err = await process.communicate()
        assert b"finished" not in out, "killed before its batch ended " + err.decode()[-500:]
        await resume_and_check(bus)
    finally:
        await bus.close()
