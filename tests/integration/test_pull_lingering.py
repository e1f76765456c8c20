"""The workers' pull consumer through one lingering pull request (bus/lingering.py), real NATS."""

from __future__ import annotations

import asyncio

import pytest

from agenttasks.bus.connection import Bus, connect
from agenttasks.bus.consumers import BusUnavailable, Delivery, PullConsumer
from agenttasks.bus.messages import STREAM, decode, task_subject
from agenttasks.servers.nats import EmbeddedNats
from tests.integration.test_bus import task_event

SUBJECTS = [task_subject(task_type="summary", priority="normal", kind="created")]


async def bound(worker: Bus, name: str, **options: float) -> PullConsumer:
    return await worker.pull_consumer(name, subjects=SUBJECTS, lingering=True, **options)  # type: ignore[arg-type]


async def take(consumer: PullConsumer, count: int, batch: int) -> list[Delivery]:
    taken: list[Delivery] = []
    while len(taken) < count:
        deliveries = await consumer.fetch(batch, wait=5.0)
        assert len(deliveries) <= batch
        taken += deliveries
    return taken


@pytest.fixture
async def buses(nats_server: EmbeddedNats):  # type: ignore[no-untyped-def]
    relay = await connect(nats_server.url_for("relay"), "test-lingering-relay")
    worker = await connect(nats_server.url_for("worker"), "test-lingering-worker")
    await relay.ensure_stream()
    yield relay, worker
    await relay.close()
    await worker.close()


async def test_each_message_comes_once_in_order_in_batches_no_larger_than_asked(buses) -> None:  # type: ignore[no-untyped-def]
    relay, worker = buses
    consumer = await bound(worker, "worker-lingering-order")
    sequence = await relay.publish_in_order([task_event(p) for p in range(1, 151)], 0)
    taken = await take(consumer, 150, batch=7)
    # Then one at a time, each published while a fetch waits on the same open request.
    for position in range(151, 156):
        waiting = asyncio.ensure_future(consumer.fetch(64, wait=5.0))
        sequence = await relay.publish_in_order([task_event(position)], sequence)
        taken += await waiting
    assert [decode(d.data).position for d in taken] == list(range(1, 156))  # type: ignore[union-attr]
    assert {d.delivered for d in taken} == {1}
    assert await consumer.fetch(64, wait=0.2) == []
    await consumer.close()


async def test_what_was_taken_and_not_acked_is_delivered_again_after_a_close(buses) -> None:  # type: ignore[no-untyped-def]
    relay, worker = buses
    consumer = await bound(worker, "worker-lingering-close", ack_wait=1.0)
    await relay.publish_in_order([task_event(1), task_event(2), task_event(3)], 0)
    first = await take(consumer, 3, batch=64)
    await first[0].ack()
    await consumer.close()  # 2 and 3 held unacked: nothing may be lost with the closed request
    again = await bound(worker, "worker-lingering-close", ack_wait=1.0)
    redelivered = await take(again, 2, batch=64)
    assert [decode(d.data).position for d in redelivered] == [2, 3]  # type: ignore[union-attr]
    assert [d.delivered for d in redelivered] == [2, 2]
    await again.close()


async def test_a_deleted_consumer_ends_the_fetch_with_bus_unavailable(
    buses,  # type: ignore[no-untyped-def]
    nats_server: EmbeddedNats,
) -> None:
    relay, worker = buses
    consumer = await bound(worker, "worker-lingering-gone")
    waiting = asyncio.ensure_future(consumer.fetch(64, wait=30.0))
    admin = await connect(nats_server.url_for("projector"), "test-lingering-admin")
    try:
        await relay.publish_in_order([task_event(1)], 0)
        assert len(await waiting) == 1  # the request is open on the server
        waiting = asyncio.ensure_future(consumer.fetch(64, wait=30.0))
        await admin.js.delete_consumer(STREAM, "worker-lingering-gone")
        # Not a 30 s wait for a request the server has dropped: the caller hears of it.
        with pytest.raises(BusUnavailable):
            await asyncio.wait_for(waiting, 10.0)
    finally:
        await admin.close()
        await consumer.close()
