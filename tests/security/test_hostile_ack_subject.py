"""A message forged onto a consumer's inbox is passed over, never read as a delivery.

nats-server itself refuses a client's publish with a `$JS.ACK.` reply (a permissions
violation, measured on 2.15), so a crafted ack subject can only come from the server; the
strict reading of its counters (bus/ack_subject.py, tests/bus) is defence in depth. What a
client allowed to publish to inboxes can send is a message with another reply, or none: nats-py's
`Msg.metadata` raised on it inside `fetch`, which lost the batch it came in (redelivered only
after the ack wait). The consumers now pass it over and hand out the real deliveries.
"""

from __future__ import annotations

import asyncio

import pytest

from agenttasks.bus.connection import Bus, connect
from agenttasks.bus.consumers import Delivery, PullConsumer, StreamReader
from agenttasks.bus.messages import encode
from agenttasks.servers.nats import start_nats
from tests.conftest import free_port
from tests.integration.test_bus import task_event
from tests.waiting import wait_until


@pytest.fixture(scope="module")
async def buses(tmp_path_factory: pytest.TempPathFactory, nats_passwords: dict[str, str]):  # type: ignore[no-untyped-def]
    # Our nats.conf lets no role publish to an inbox; a server without it (or a role given too
    # much) does, and the consumers must still read no forged number.
    directory = tmp_path_factory.mktemp("nats-open")
    (directory / "open.conf").write_text("jetstream: enabled\n")
    server = start_nats(
        directory, port=free_port(), passwords=nats_passwords, config=directory / "open.conf"
    )
    url = f"nats://{server.host}:{server.port}"
    buses = [await connect(url, f"test-hostile-ack-{role}") for role in ("relay", "worker", "p")]
    try:
        await buses[0].ensure_stream()
        yield buses
    finally:
        for bus in buses:
            await bus.close()
        server.stop()


async def forge(bus: Bus, inbox: str, reply: str) -> None:
    # nats-py sends no reply at all for an empty one.
    await bus.nc.publish(f"{inbox}.1", encode(task_event(999)), reply=reply)
    await bus.nc.flush()


async def fetched(fetch, count: int) -> list[Delivery]:  # type: ignore[no-untyped-def]
    taken: list[Delivery] = []
    async with asyncio.timeout(10.0):
        while len(taken) < count:
            taken += await fetch(16, wait=5.0)
    return taken


async def test_a_pull_consumer_passes_over_a_forged_message_and_keeps_the_batch(buses) -> None:  # type: ignore[no-untyped-def]
    relay, worker, _ = buses
    _, last = await relay.stream_bounds()
    consumer: PullConsumer = await worker.pull_consumer(
        "hostile-ack", lingering=True, start_sequence=last + 1
    )
    try:
        pull = consumer._pull
        assert pull is not None
        await forge(worker, pull._inbox, "")
        await forge(worker, pull._inbox, "not.an.ack")
        await wait_until(lambda: len(pull._buffer) == 2, within=5.0)  # they are taken in first
        sequence = await relay.publish_in_order([task_event(last + 1)], last)
        taken = await fetched(consumer.fetch, 1)
        assert [(d.sequence, d.delivered) for d in taken] == [(sequence, 1)]
        await taken[0].ack()
    finally:
        await consumer.close()


async def test_a_stream_reader_passes_over_a_forged_message(buses) -> None:  # type: ignore[no-untyped-def]
    relay, _, projector = buses
    _, last = await relay.stream_bounds()
    reader: StreamReader = await projector.open_reader("hostile-ack", last + 1)
    try:
        pull = reader._pull
        assert pull is not None
        await forge(projector, pull._inbox, "")
        await wait_until(lambda: len(pull._buffer) == 1, within=5.0)  # it is taken in first
        sequence = await relay.publish_in_order([task_event(last + 1), task_event(last + 2)], last)
        taken = await fetched(reader.fetch, 2)
        assert [d.sequence for d in taken] == [sequence - 1, sequence]
        assert all(b"999" not in d.data for d in taken)
    finally:
        await reader.close()
