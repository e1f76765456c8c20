"""A stored message with a hostile header block reads back as nats-py would read it, and is kept.

Our connections parse header blocks with bus/headers.py instead of nats-py's own method. A
publisher that bypasses nats-py's header checks can store names with whitespace, non-ASCII
bytes, lines without a colon, invalid UTF-8 values and floods of distinct names: the consumer
must still hand the message out, with the headers nats-py would have given it, and the table
of names seen must stay bounded however many new names arrive.
"""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client
from nats.protocol import command

from agenttasks.bus import headers
from agenttasks.bus.connection import Bus, connect
from agenttasks.bus.consumers import Delivery
from agenttasks.bus.headers import HeaderClient
from agenttasks.bus.messages import encode, subject_of
from agenttasks.servers.nats import EmbeddedNats
from tests.integration.test_bus import task_event

_FLOOD = b"".join(b"X-Flood-%d: %d\r\n" % (i, i) for i in range(headers._NAMES_MAX * 2))
HOSTILE = (
    b"NATS/1.0\r\n"
    b"Na me: space\r\n\x1cName: file separator\r\nN\xc3\xa9: non-ascii\r\nno colon at all\r\n"
    b"\r\n: empty name\r\nValue: \xff\xfe invalid utf-8\r\n"
    b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n" + _FLOOD + b"\r\n"
)


@pytest.fixture(scope="module")
async def buses(module_nats: EmbeddedNats):  # type: ignore[no-untyped-def]
    relay = await connect(module_nats.url_for("relay"), "test-hostile-headers-relay")
    projector = await connect(module_nats.url_for("projector"), "test-hostile-headers-projector")
    try:
        await relay.ensure_stream()
        yield relay, projector
    finally:
        await relay.close()
        await projector.close()


async def test_a_hostile_header_block_reads_back_as_nats_py_reads_it(buses) -> None:  # type: ignore[no-untyped-def]
    relay, projector = buses
    assert isinstance(projector.nc, HeaderClient)  # what parses the block is ours
    relay_bus: Bus = relay
    _, last = await relay_bus.stream_bounds()
    event = task_event(last + 1)
    payload = encode(event)
    # nats-py refuses such names when it publishes: the raw command is what a client that does
    # not use nats-py could send.
    await relay_bus.nc._send_command(command.hpub_cmd(subject_of(event), "", HOSTILE, payload))
    await relay_bus.nc.flush()
    reader = await projector.open_reader("hostile-headers", last + 1)
    try:
        taken: list[Delivery] = []
        async with asyncio.timeout(10.0):
            while not taken:
                taken = await reader.fetch(8, wait=5.0)
    finally:
        await reader.close()
    [delivery] = taken
    assert delivery.data == payload
    assert delivery.traceparent == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    got = delivery._message.headers  # type: ignore[attr-defined]
    assert got == Client._parse_header_lines(HOSTILE[len(b"NATS/1.0\r\n") :])
    assert "Na me" not in got
    assert "\x1cName" not in got
    assert "Value" in got
    assert len(headers._NAMES) <= headers._NAMES_MAX
