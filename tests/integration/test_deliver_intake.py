"""The deliverer's intake, acknowledged once per batch: nothing skipped, nothing sent twice.

Its consumer (`webhooks-intake`, AckPolicy.ALL) is taken by one deliverer at a time, and an
acknowledgement covers every earlier message; so what a leader was handed and never
acknowledged (it died mid-batch) must come again to the next one, and an upgrade from the old
consumer (`webhooks`, one ack per message) must start right after what that one acknowledged:
the endings it acknowledged are not put in the outbox again, every later one is.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from nats.js.api import AckPolicy, ConsumerInfo

from agenttasks import bootstrap
from agenttasks.bus.connection import connect
from agenttasks.bus.messages import STREAM
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.webhooks.deliverer import Deliverer, intake_subjects
from agenttasks.webhooks.intake import CONSUMER, OLD_CONSUMER
from tests.integration.stack import Stack, running_stack
from tests.integration.test_webhooks import deliverer_settings, finish, register
from tests.waiting import wait_until

HOOK = "http://127.0.0.1:9/hook"  # never answers; only the outbox rows are looked at


def queued(stack: Stack) -> list[str]:
    """The webhook-ids in the outbox, one per row."""
    return [row[0] for row in stack.rows("SELECT message_id FROM webhook_deliveries")]


class Running:
    """A deliverer running in this process on its own NATS connection."""

    def __init__(self, stack: Stack, nats: EmbeddedNats, name: str) -> None:
        self.stack, self.nats, self.name = stack, nats, name
        self._stop = asyncio.Event()
        self._found: list[Deliverer] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Deliverer:
        async def run() -> None:
            bus = await connect(self.nats.url_for("deliverer"), self.name)
            try:
                settings = deliverer_settings(self.stack.database_url)
                async with bootstrap.deliverer(settings, self.stack.store, bus) as running:
                    self._found.append(running)
                    await running.run(self._stop)
            finally:
                await bus.close()

        self._task = asyncio.create_task(run())
        await wait_until(lambda: bool(self._found) or self._task is None or self._task.done())
        return self._found[0]

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


@asynccontextmanager
async def deliverer(stack: Stack, nats: EmbeddedNats, name: str) -> AsyncIterator[Deliverer]:
    """A deliverer running while the block runs."""
    running = Running(stack, nats, name)
    try:
        yield await running.start()
    finally:
        await running.stop()


def leading(running: Deliverer) -> bool:
    return running.intake is not None and running.intake.is_leader


async def consumer_info(nats: EmbeddedNats) -> ConsumerInfo:
    bus = await connect(nats.url_for("deliverer"), "test-look")
    try:
        return await bus.js.consumer_info(STREAM, CONSUMER)
    finally:
        await bus.close()


async def old_consumer_exists(nats: EmbeddedNats) -> bool:
    bus = await connect(nats.url_for("deliverer"), "test-look")
    try:
        return await bus.has_consumer(OLD_CONSUMER)
    finally:
        await bus.close()


async def published(stack: Stack, position: int) -> None:
    await wait_until(lambda: stack.relay.published_position >= position, 10)


async def test_an_upgrade_starts_after_what_the_old_consumer_acknowledged(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async with running_stack(database_url, nats_server) as stack:
        await register(database_url, HOOK, ["task.completed"])
        first = await asyncio.to_thread(finish, stack, "completed")
        second = await asyncio.to_thread(finish, stack, "completed")
        await published(stack, second)
        # The old deliverer (one ack per message) acknowledged the first task's Created and
        # ending, and was handed the second's without acknowledging them (it was stopped).
        old = await connect(nats_server.url_for("worker"), "test-old-deliverer")
        try:
            consumer = await old.pull_consumer(OLD_CONSUMER, subjects=intake_subjects())
            for delivery in await consumer.fetch(2, 5.0):
                await delivery.ack()
            assert len(await consumer.fetch(2, 5.0)) == 2
            await consumer.close()
        finally:
            await old.close()

        async with deliverer(stack, nats_server, "test-new-deliverer") as new:
            await wait_until(lambda: f"agenttasks:{second}" in queued(stack), 10)
            third = await asyncio.to_thread(finish, stack, "completed")
            await wait_until(lambda: f"agenttasks:{third}" in queued(stack), 10)
            assert leading(new)
            assert (await consumer_info(nats_server)).config.ack_policy == AckPolicy.ALL
            assert not await old_consumer_exists(nats_server), "the old one is removed"
        assert f"agenttasks:{first}" not in queued(stack), "acknowledged before: not sent again"
        assert sorted(queued(stack)) == sorted([f"agenttasks:{second}", f"agenttasks:{third}"])


async def test_what_a_dead_leader_left_unacknowledged_comes_to_the_next_one(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async with running_stack(database_url, nats_server) as stack:
        await register(database_url, HOOK, ["task.completed"])
        async with deliverer(stack, nats_server, "test-first"):
            done = await asyncio.to_thread(finish, stack, "completed")
            await wait_until(lambda: queued(stack) == [f"agenttasks:{done}"], 10)
        lost = [await asyncio.to_thread(finish, stack, "completed") for _ in range(2)]
        await published(stack, lost[-1])
        # A leader that took a batch and died before writing it (no ack, no outbox rows).
        dead = await connect(nats_server.url_for("deliverer"), "test-dead-leader")
        try:
            consumer = await dead.pull_consumer(CONSUMER, ack_all=True, declare=False)
            assert len(await consumer.fetch(10, 5.0)) == 4  # two Created, two endings
            await consumer.close()
        finally:
            await dead.close()
        later = await asyncio.to_thread(finish, stack, "completed")

        async with deliverer(stack, nats_server, "test-next"):
            # The later ending's acknowledgement would cover the dead leader's batch: it must
            # have been taken again before.
            expected = sorted(f"agenttasks:{p}" for p in (done, *lost, later))
            await wait_until(lambda: sorted(queued(stack)) == expected, 10)
            await wait_until(lambda: idle(nats_server), 10)
        assert sorted(queued(stack)) == expected


async def test_one_deliverer_takes_intake_and_a_standby_takes_over_when_it_stops(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async with running_stack(database_url, nats_server) as stack:
        await register(database_url, HOOK, ["task.completed"])
        first_one = Running(stack, nats_server, "test-a")
        a = await first_one.start()
        try:
            await wait_until(lambda: leading(a), 10)
            async with deliverer(stack, nats_server, "test-b") as b:
                await wait_until(lambda: b.intake is not None)
                first = await asyncio.to_thread(finish, stack, "completed")
                await wait_until(lambda: f"agenttasks:{first}" in queued(stack), 10)
                assert not leading(b), "one deliverer takes intake at a time"
                await first_one.stop()  # the leader goes: its lock with it
                await wait_until(lambda: leading(b), 10)
                second = await asyncio.to_thread(finish, stack, "completed")
                await wait_until(lambda: f"agenttasks:{second}" in queued(stack), 10)
        finally:
            await first_one.stop()
        assert sorted(queued(stack)) == sorted([f"agenttasks:{first}", f"agenttasks:{second}"])


async def idle(nats: EmbeddedNats) -> bool:
    info = await consumer_info(nats)
    return not info.num_pending and not info.num_ack_pending
