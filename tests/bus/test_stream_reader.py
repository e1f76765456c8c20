"""The projectors' StreamReader through a lingering pull request, on a real NATS server."""

from __future__ import annotations

import asyncio

import pytest

from agenttasks.bus.connection import connect
from agenttasks.bus.consumers import Delivery, StreamReader
from agenttasks.bus.messages import STREAM, decode
from agenttasks.servers.nats import EmbeddedNats
from tests.integration.test_bus import task_event


@pytest.fixture(scope="module")
async def buses(module_nats: EmbeddedNats):  # type: ignore[no-untyped-def]
    relay = await connect(module_nats.url_for("relay"), "test-reader-relay")
    projector = await connect(module_nats.url_for("projector"), "test-reader-projector")
    await relay.ensure_stream()
    await relay.purge_subject(">")
    yield relay, projector
    await relay.close()
    await projector.close()


async def read(reader: StreamReader, count: int, batch: int) -> list[Delivery]:
    taken: list[Delivery] = []
    while len(taken) < count:
        deliveries = await reader.fetch(batch, wait=5.0)
        assert len(deliveries) <= batch
        taken += deliveries
    return taken


async def test_a_reader_reads_in_order_from_where_it_was_put_and_after_a_seek(buses) -> None:  # type: ignore[no-untyped-def]
    relay, projector = buses
    _, last = await relay.stream_bounds()
    sequence = await relay.publish_in_order(
        [task_event(p) for p in range(last + 1, last + 41)], last
    )
    reader = await projector.open_reader("test-order", last + 11)
    try:
        taken = await read(reader, 30, batch=7)
        assert [d.sequence for d in taken] == list(range(last + 11, sequence + 1))
        assert [decode(d.data).position for d in taken] == list(range(last + 11, last + 41))
        assert all(d.delivered == 1 for d in taken)
        # A message published while a fetch waits comes on the open request.
        waiting = asyncio.ensure_future(reader.fetch(64, wait=5.0))
        sequence = await relay.publish_in_order([task_event(last + 41)], sequence)
        assert [d.sequence for d in await waiting] == [sequence]
        await reader.seek(last + 3)  # back: what the lingering request held is not handed out
        assert [d.sequence for d in await read(reader, 5, batch=5)] == list(
            range(last + 3, last + 8)
        )
        assert reader.next_sequence == last + 8
    finally:
        await reader.close()


async def test_a_reader_whose_consumer_is_deleted_goes_on_without_loss_or_repeat(buses) -> None:  # type: ignore[no-untyped-def]
    relay, projector = buses
    _, last = await relay.stream_bounds()
    # Positions not used before: JetStream drops a repeated Nats-Msg-Id as a duplicate.
    events = [task_event(p) for p in range(last + 101, last + 111)]
    sequence = await relay.publish_in_order(events, last)
    reader = await projector.open_reader("test-gone", last + 1)
    try:
        taken = await read(reader, 4, batch=4)
        assert reader._name is not None
        await projector.js.delete_consumer(STREAM, reader._name)  # e.g. a server restart (memory)
        async with asyncio.timeout(10.0):  # the fetch that hears of it recreates the consumer
            while len(taken) < 10:
                taken += await reader.fetch(4, wait=5.0)
        assert [d.sequence for d in taken] == list(range(last + 1, sequence + 1))
    finally:
        await reader.close()
