"""OrderedPublisher (bus/publisher.py): batches sent without waiting for the previous one's ack.

The chain of Nats-Expected-Last-* headers runs across batches, so the stream holds them in
order and once, the acks report positions in order, and a refused batch takes every batch sent
after it down with it (nothing stored out of order) and surfaces as PublishFailed.
"""

from __future__ import annotations

import pytest
from nats.js.api import Header

from agenttasks.bus.connection import connect
from agenttasks.bus.messages import STREAM, decode
from agenttasks.bus.publisher import MAX_UNACKED, OrderedPublisher, PublishFailed
from agenttasks.servers.nats import EmbeddedNats
from tests.integration.test_bus import task_event
from tests.waiting import wait_until


async def test_batches_sent_back_to_back_are_stored_in_order_and_acked_in_order(
    nats_server: EmbeddedNats,
) -> None:
    bus = await connect(nats_server.url_for("relay"), "test-ordered-publisher")
    acked: list[int] = []
    publisher = OrderedPublisher(bus, 0, acked.append)
    try:
        await bus.ensure_stream()
        await publisher.start()
        batches = [[task_event(1), task_event(2)], [task_event(3)], [task_event(5), task_event(6)]]
        # More than MAX_UNACKED: the later sends wait for the oldest ack, not for their own.
        batches += [[task_event(p)] for p in range(7, 8 + MAX_UNACKED)]
        for batch in batches:
            await publisher.send(batch, batch[-1].position)  # no ack awaited in between
            assert publisher.unacked <= MAX_UNACKED
        assert publisher.unacked > 0
        await wait_until(lambda: publisher.unacked == 0)
        publisher.check()
        positions = [1, 2, 3, 5, 6, *range(7, 8 + MAX_UNACKED)]
        assert acked == [batch[-1].position for batch in batches]
        assert publisher.sequence == len(positions)
        stored = [await bus.js.get_msg(STREAM, seq=s) for s in range(1, len(positions) + 1)]
        assert [decode(m.data or b"").position for m in stored] == positions
        # The second batch followed the first one's last message by id (its ack was not in).
        headers = stored[2].headers or {}
        if headers.get(Header.EXPECTED_LAST_SEQUENCE) is None:
            assert headers[Header.EXPECTED_LAST_MSG_ID] == "agenttasks:2"
        else:  # the ack came before the send: the sequence it gave
            assert headers[Header.EXPECTED_LAST_SEQUENCE] == "2"
    finally:
        await publisher.close()
        await bus.close()


async def test_a_refused_batch_fails_and_no_batch_sent_after_it_is_stored(
    nats_server: EmbeddedNats,
) -> None:
    bus = await connect(nats_server.url_for("relay"), "test-ordered-publisher")
    acked: list[int] = []
    try:
        await bus.ensure_stream()
        assert await bus.publish_in_order([task_event(1)], 0) == 1
        # A stale sequence (a second relay would have one): its first batch is refused...
        publisher = OrderedPublisher(bus, 0, acked.append)
        await publisher.start()
        try:
            await publisher.send([task_event(2)], 2)
            # ...and this one, sent before that refusal came back, follows it by id: refused.
            await publisher.send([task_event(3), task_event(4)], 4)

            def failed() -> bool:
                try:
                    publisher.check()
                except PublishFailed:
                    return True
                return False

            await wait_until(failed)
            with pytest.raises(PublishFailed):
                await publisher.send([task_event(5)], 5)
        finally:
            await publisher.close()
        assert acked == []
        assert await bus.last_published() == (1, 1)
    finally:
        await bus.close()
