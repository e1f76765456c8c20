"""nats.conf: each role may do its job and nothing more; strangers do not get in."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.errors import NoServersError
from nats.js.api import ConsumerConfig, DeliverPolicy

from agenttasks.bus.connection import connect, ensure_stream
from agenttasks.bus.messages import STREAM
from agenttasks.servers.nats import EmbeddedNats
from tests.waiting import wait_until

SUBJECT = "agenttasks.events.task.summary.normal.t1.created"


async def with_errors(url: str) -> tuple[nats.NATS, list[str]]:
    """A connection whose permission violations are collected (they arrive only via error_cb)."""
    errors: list[str] = []

    async def on_error(error: Exception) -> None:
        errors.append(str(error))

    return await nats.connect(url, error_cb=on_error, max_reconnect_attempts=0), errors


async def seeded(server: EmbeddedNats) -> None:
    relay = await connect(server.url_for("relay"), "relay")
    await ensure_stream(relay.js)
    await relay.js.publish(SUBJECT, b'{"n": 1}', headers={"Nats-Msg-Id": "agenttasks:1"})
    await relay.close()


async def test_the_reader_replays_and_follows_events_but_cannot_publish_or_keep_a_consumer(
    nats_server: EmbeddedNats,
) -> None:
    await seeded(nats_server)
    reader, errors = await with_errors(nats_server.url_for("reader"))
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def collect(msg: nats.aio.msg.Msg) -> None:
        received.put_nowait(msg.data)

    js = reader.jetstream()
    await js.subscribe(
        "agenttasks.events.>", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL, cb=collect
    )
    assert await asyncio.wait_for(received.get(), 5) == b'{"n": 1}'

    # A refused request gets no reply: it surfaces as a timeout, the reason only in error_cb.
    with pytest.raises(nats.errors.TimeoutError):
        await js.publish(SUBJECT, b"forged", timeout=1)
    with pytest.raises(nats.errors.TimeoutError):
        await js.add_consumer(STREAM, ConsumerConfig(durable_name="mine"), timeout=1)
    await reader.flush()
    assert any("permissions violation" in e.lower() for e in errors), errors
    await reader.close()

    relay = await connect(nats_server.url_for("relay"), "check")
    assert (await relay.js.stream_info(STREAM)).state.messages == 1, "nothing forged got in"
    await relay.close()


async def test_projectors_and_workers_consume_but_cannot_publish_events(
    nats_server: EmbeddedNats,
) -> None:
    await seeded(nats_server)
    for role in ("projector", "worker"):
        client, errors = await with_errors(nats_server.url_for(role))
        js = client.jetstream()
        await js.add_consumer(STREAM, ConsumerConfig(durable_name=f"{role}-check"))
        subscription = await js.pull_subscribe_bind(durable=f"{role}-check", stream=STREAM)
        [message] = await subscription.fetch(1, timeout=5)
        await message.ack()
        await client.publish(SUBJECT, b"forged")
        await client.flush()
        # The server reports the violation asynchronously, through error_cb only.
        await wait_until(
            lambda seen=errors: any("permissions violation" in e.lower() for e in seen), 5
        )
        await subscription.unsubscribe()
        await client.close()


@pytest.mark.parametrize("credentials", ["", "reader:wrong-password@", "nobody:x@"])
async def test_strangers_are_refused(nats_server: EmbeddedNats, credentials: str) -> None:
    with pytest.raises((NoServersError, nats.errors.Error, OSError)):
        await nats.connect(
            f"nats://{credentials}{nats_server.host}:{nats_server.port}",
            max_reconnect_attempts=0,
            connect_timeout=2,
            allow_reconnect=False,
        )


async def test_the_deliverer_binds_only_its_own_consumer_and_cannot_publish_events(
    nats_server: EmbeddedNats,
) -> None:
    await seeded(nats_server)
    client, errors = await with_errors(nats_server.url_for("deliverer"))
    js = client.jetstream()
    await js.add_consumer(STREAM, ConsumerConfig(durable_name="webhooks-intake"))
    subscription = await js.pull_subscribe_bind(durable="webhooks-intake", stream=STREAM)
    [message] = await subscription.fetch(1, timeout=5)
    await message.ack()
    # A worker's queue is not its own: it can neither create nor read one (its messages are
    # the workers' to take and acknowledge).
    with pytest.raises(nats.errors.TimeoutError):
        await js.add_consumer(
            STREAM, ConsumerConfig(durable_name="worker-summary-normal"), timeout=1
        )
    await client.publish(SUBJECT, b"forged")
    await client.flush()
    await wait_until(lambda: sum("permissions violation" in e.lower() for e in errors) >= 2, 5)
    await subscription.unsubscribe()
    await client.close()
    relay = await connect(nats_server.url_for("relay"), "check")
    assert (await relay.js.stream_info(STREAM)).state.messages == 1, "nothing forged got in"
    await relay.close()
