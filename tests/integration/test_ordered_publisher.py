"""OrderedPublisher (bus/publisher.py): batches sent without waiting for the previous one's ack.

The chain of Nats-Expected-Last-* headers runs across batches, so the stream holds them in
order and once, the acks report positions in order, and a refused batch takes every batch sent
after it down with it (nothing stored out of order) and surfaces as PublishFailed.
"""

from __future__ import annotations

import pytest
from nats.js.api import Header

from agenttasks.bus import publisher as publisher_module
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


def _failure(publisher: OrderedPublisher) -> str | None:
    try:
        publisher.check()
    except PublishFailed as error:
        return str(error)
    return None


async def test_no_stream_fails_the_batch(nats_server: EmbeddedNats) -> None:
    bus = await connect(nats_server.url_for("relay"), "test-ordered-publisher")
    publisher = OrderedPublisher(bus, 0)
    try:
        await publisher.start()  # no ensure_stream: the server answers "no responders"
        await publisher.send([task_event(1)], 1)
        await wait_until(lambda: _failure(publisher) is not None)
        assert "no stream took the messages" in (_failure(publisher) or "")
    finally:
        await publisher.close()
        await bus.close()


async def test_an_ack_that_does_not_come_fails_in_time(
    nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publisher_module, "ACK_TIMEOUT_SECONDS", 0.2)
    # A plain subscriber on the subjects and no stream: someone hears the message, nobody acks.
    listener = await connect(nats_server.url_for("reader"), "test-ordered-publisher-listener")
    heard: list[bytes] = []

    async def hear(payload: bytes) -> None:
        heard.append(payload)

    await listener.subscribe("agenttasks.events.>", hear)
    bus = await connect(nats_server.url_for("relay"), "test-ordered-publisher")
    publisher = OrderedPublisher(bus, 0)
    try:
        await publisher.start()
        for position in range(1, MAX_UNACKED + 1):
            await publisher.send([task_event(position)], position)
        # The next send waits for the oldest ack, which never comes: it fails after the timeout.
        with pytest.raises(PublishFailed, match="in time"):
            await publisher.send([task_event(MAX_UNACKED + 1)], MAX_UNACKED + 1)
        assert heard
        with pytest.raises(PublishFailed):
            publisher.check()
    finally:
        await publisher.close()
        await bus.close()
        await listener.close()
