"""The Bus interface against the real NATS: what the relay, workers and watchdog rely on."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

from agenttasks.bus.connection import connect
from agenttasks.bus.messages import TaskEvent, decode, task_subject
from agenttasks.bus.publisher import PublishFailed
from agenttasks.servers.nats import PACKAGED_CONFIG, EmbeddedNats, start_nats
from tests.conftest import free_port
from tests.waiting import wait_until


def task_event(position: int, kind: str = "created", task_type: str = "summary") -> TaskEvent:
    return TaskEvent(
        position=position,
        task_id=str(uuid4()),
        type=kind,
        version=1,
        timestamp=datetime.now(UTC),
        user="alice",
        task_type=task_type,
        priority="normal",
        update_type="status",
        status="pending",
        progress=0,
        message="",
        data={},
    )


async def test_published_events_are_read_back_in_order_by_sequence(
    nats_server: EmbeddedNats,
) -> None:
    bus = await connect(nats_server.url_for("relay"), "test-bus-relay")
    try:
        await bus.ensure_stream()
        assert await bus.last_published() == (0, 0)
        events = [task_event(3), task_event(7, "started"), task_event(9, "cancelled")]
        last = await bus.publish_in_order(events, 0)
        assert last == 3
        assert await bus.last_published() == (9, 3)
        assert await bus.stream_bounds() == (1, 3)
        assert [decode(await bus.stored(s)) for s in (1, 2, 3)] == events
    finally:
        await bus.close()


async def test_a_pull_consumer_gets_only_its_subjects_as_deliveries(
    nats_server: EmbeddedNats,
) -> None:
    relay = await connect(nats_server.url_for("relay"), "test-bus-relay")
    worker = await connect(nats_server.url_for("worker"), "test-bus-worker")
    try:
        await relay.ensure_stream()
        wanted, other = task_event(1), task_event(2, task_type="research")
        await relay.publish_in_order([wanted, other], 0)
        subjects = [task_subject(task_type="summary", priority="normal", kind="created")]
        consumer = await worker.pull_consumer("worker-summary-normal", subjects=subjects)
        deliveries = await consumer.fetch(10, wait=1.0)
        assert [decode(d.data) for d in deliveries] == [wanted]
        assert (deliveries[0].delivered, deliveries[0].sequence) == (1, 1)
        await deliveries[0].ack()
        assert await consumer.fetch(10, wait=0.2) == []
        await consumer.close()
    finally:
        await relay.close()
        await worker.close()


async def test_a_core_subscription_hands_payloads_to_its_handler_until_closed(
    nats_server: EmbeddedNats,
) -> None:
    relay = await connect(nats_server.url_for("relay"), "test-bus-relay")
    worker = await connect(nats_server.url_for("worker"), "test-bus-worker")
    try:
        await relay.ensure_stream()
        seen: list[bytes] = []

        async def handler(data: bytes) -> None:
            seen.append(data)

        subscription = await worker.subscribe(task_subject(kind="cancelled"), handler)
        cancelled = task_event(1, "cancelled")
        await relay.publish_in_order([cancelled], 0)
        await wait_until(lambda: len(seen) == 1, within=5.0)
        assert decode(seen[0]) == cancelled
        await subscription.close()
        # A subscription made after the close is known to the server after it: once it gets
        # the next message, the closed one would have got it too.
        later: list[bytes] = []

        async def later_handler(data: bytes) -> None:
            later.append(data)

        after = await worker.subscribe(task_subject(kind="cancelled"), later_handler)
        await relay.publish_in_order([task_event(2, "cancelled")], 1)
        await wait_until(lambda: len(later) == 1, within=5.0)
        assert len(seen) == 1
        await after.close()
    finally:
        await relay.close()
        await worker.close()


def traced_commands(log: Path, client: str) -> list[str]:
    """The protocol commands nats-server traced to and from the connection named `client`."""
    tag = f':{client}"'
    return [
        line.split(" - ")[-1]
        for line in log.read_text().splitlines()
        if tag in line and (" - <<- [" in line or " - ->> [" in line)
    ]


def subs_answered(commands: list[str]) -> int:
    """How many SUBs the server had processed when it sent its last PONG."""
    last_pong = max(i for i, command in enumerate(commands) if command == "->> [PONG]")
    return sum(command.startswith("<<- [SUB ") for command in commands[:last_pong])


async def test_the_server_has_a_subscription_when_subscribe_returns(
    tmp_path: Path, nats_passwords: dict[str, str]
) -> None:
    # The server handles a connection's commands in order, so the PONG that ends subscribe's
    # flush must come after the SUB. nats-py's flush() alone wrote its PING ahead of the SUB
    # still waiting for its flusher task: the PONG came first, and a message published by
    # another connection in that gap was lost (the end-to-end test above failed under load).
    # The server's trace shows the order every time; a lost message only now and then.
    config = tmp_path / "nats.conf"
    config.write_text(PACKAGED_CONFIG.read_text() + "\ntrace: true\n")
    server = start_nats(
        tmp_path / "nats", port=free_port(), passwords=nats_passwords, config=config
    )
    try:
        worker = await connect(server.url_for("worker"), "test-bus-traced")
        try:

            async def handler(data: bytes) -> None:
                pass

            first = await worker.subscribe(task_subject(kind="cancelled"), handler)
            assert subs_answered(traced_commands(server.log_path, "test-bus-traced")) == 1
            await first.close()  # and again after a close on the same connection, as above
            second = await worker.subscribe(task_subject(kind="cancelled"), handler)
            assert subs_answered(traced_commands(server.log_path, "test-bus-traced")) == 2
            await second.close()
        finally:
            await worker.close()
    finally:
        server.stop()


async def test_a_message_refused_mid_batch_fails_the_batch_and_nothing_after_it_is_stored(
    nats_server: EmbeddedNats,
) -> None:
    # Only a batch's last message is acknowledged: a refusal before it must still surface.
    bus = await connect(nats_server.url_for("relay"), "test-bus-relay")
    try:
        await bus.ensure_stream()
        first = task_event(5)
        assert await bus.publish_in_order([first], 0) == 1
        # The repeat of position 5 is dropped as a duplicate, so the message after it, which
        # must follow position 5, does not follow the stream's last message (position 6).
        repeat = task_event(5)
        with pytest.raises(PublishFailed):
            await bus.publish_in_order([task_event(6), repeat, task_event(7)], 1)
        assert await bus.last_published() == (6, 2)
        with pytest.raises(PublishFailed):  # a stale sequence: the first one is refused
            await bus.publish_in_order([task_event(8), task_event(9)], 1)
        assert await bus.last_published() == (6, 2)
    finally:
        await bus.close()
