"""The deliverer's intake consumer: one acknowledgement per batch, safe to hand over.

`webhooks-intake` is a durable consumer with AckPolicy.ALL: acknowledging a message
acknowledges every earlier one, so a batch costs one ack, sent only once every message of the
batch is in the outbox. That is sound only while one process takes from it and nothing it was
handed went missing, so:

- one deliverer at a time takes intake: the holder of a Postgres session advisory lock
  (`Leadership`, on leadership.py's `LockLeader`); the others stand by (their dispatch runs as
  before);
- each time a process starts taking (leading anew, or after any error), it looks at the
  consumer: messages handed out and not acknowledged (a leader that died mid-batch, an error
  here) make it re-create the consumer at the ack floor + 1, so they come again, and the
  acknowledgement of a later batch can never cover them unprocessed;
- `IntakeConsumer.follows` checks that every delivery carries the next consumer sequence: a
  gap (a message lost on a reconnect, or another process took one) ends the run before its
  batch is acknowledged, and the next run starts from the ack floor again.

What comes again after a re-creation is put in the outbox again, which adds nothing (unique by
target and webhook-id). The consumer of the versions before this one, `webhooks`
(AckPolicy.EXPLICIT, which cannot be changed in place), is taken over: the new consumer starts
after its ack floor, and the old one is deleted once the new one exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from agenttasks.bus.connection import Bus
from agenttasks.bus.consumers import Delivery, PullConsumer
from agenttasks.leadership import Lead, LockLeader, LostLead, sleep

log = logging.getLogger(__name__)

CONSUMER = "webhooks-intake"
OLD_CONSUMER = "webhooks"  # AckPolicy.EXPLICIT, one ack per message (before 2026-12-01)
LOCK_KEY = 0x61677474_686F6F6B & 0x7FFFFFFFFFFFFFFF  # "agtthook": one intake per database
RETRY_SECONDS = 2.0  # after an error, before taking again from the ack floor
ACK_WAIT_SECONDS = 60.0


class IntakeConsumer:
    """The bound consumer, and the consumer sequence its next delivery must carry."""

    def __init__(self, consumer: PullConsumer, expected: int) -> None:
        self._consumer = consumer
        self.expected = expected

    async def fetch(self, batch: int, wait: float) -> list[Delivery]:
        """Up to `batch` messages, waiting at most `wait` seconds for the first."""
        return await self._consumer.fetch(batch, wait)

    def follows(self, delivery: Delivery) -> bool:
        """Whether `delivery` is the consumer's next one (no delivery in between went elsewhere)."""
        if delivery.consumer_sequence != self.expected:
            log.warning(
                "webhooks: intake got delivery %s, expected %s; taking again from the ack floor",
                delivery.consumer_sequence, self.expected,
            )  # fmt: skip
            return False
        self.expected += 1
        return True

    async def ack_through(self, deliveries: list[Delivery]) -> None:
        """Acknowledges every message up to the batch's last (all of them handled)."""
        if deliveries:
            await max(deliveries, key=lambda d: d.sequence).ack()

    async def close(self) -> None:
        """Stops fetching; the consumer and its ack floor stay on the server."""
        await self._consumer.close()


async def open_intake(bus: Bus, subjects: list[str]) -> IntakeConsumer:
    """Binds to the intake consumer, re-creating it at its ack floor if anything is unacked."""
    position = await bus.consumer_position(CONSUMER)
    options: dict[str, Any] = {"subjects": subjects, "ack_wait": ACK_WAIT_SECONDS, "ack_all": True}
    # One open pull request across fetches, its messages taken by a callback (bus/lingering.py):
    # no pull request and "no messages" status per fetch, no nats-py task per message.
    options["lingering"] = True
    if position is not None and not position.ack_pending:
        consumer = await bus.pull_consumer(CONSUMER, declare=False, **options)
        intake = IntakeConsumer(consumer, position.delivered + 1)
    else:
        if position is not None:  # handed out, never acknowledged: they must come again
            start = position.ack_floor + 1
            await bus.delete_consumer(CONSUMER)
        else:
            old = await bus.consumer_position(OLD_CONSUMER)
            start = old.ack_floor + 1 if old is not None else 1
        log.info("webhooks: intake consumer (re)created at stream sequence %d", start)
        consumer = await bus.pull_consumer(CONSUMER, start_sequence=start, **options)
        intake = IntakeConsumer(consumer, 1)
    await bus.delete_consumer(OLD_CONSUMER)  # only now: the new one holds its position
    return intake


# take(intake, leading): handles batches until it returns or raises; `leading()` raises
# LostLead once the lock may be gone, and is awaited before each acknowledgement.
Take = Callable[[IntakeConsumer, Callable[[], Awaitable[None]]], Awaitable[None]]


class Leadership:
    """Runs `take` while this process holds the intake lock; stands by otherwise."""

    def __init__(self, database_url: str, bus: Bus, subjects: list[str]) -> None:
        self.database_url = database_url
        self.bus = bus
        self.subjects = subjects
        self._leader = LockLeader(
            database_url,
            LOCK_KEY,
            name=f"agenttasks-deliver {socket.gethostname()}:{os.getpid()}",
            role="webhooks intake",
            logger=log,
        )

    @property
    def is_leader(self) -> bool:
        """Whether this process holds the intake lock now."""
        return self._leader.is_leader

    async def run(self, stop: asyncio.Event, take: Take) -> None:
        """Leads or stands by until `stop`, surviving restarts of Postgres and NATS."""

        async def work(held: Lead) -> None:
            await self._lead(held, stop, take)

        await self._leader.run(stop, work)

    async def _lead(self, lead: Lead, stop: asyncio.Event, take: Take) -> None:
        while not stop.is_set():
            # Every time, before the consumer may be deleted and re-created: a stale leader that
            # ended its run on a gap (the new leader's deliveries) must not re-create the
            # consumer under the new one. (LostLead ends the lead: outside the try below.)
            await lead.check()
            try:
                intake = await open_intake(self.bus, self.subjects)
            except Exception as error:  # NATS away, the stream not made yet: try again
                log.info("webhooks: cannot open the intake consumer: %r", error)
                await sleep(stop, RETRY_SECONDS)
                continue
            try:
                # `lead.still` at most once a second, not before every ack (a round trip per
                # batch): a stale leader still fetching shares the consumer with the new one, and
                # the deliveries the new one takes leave it a gap (`follows`) before its next
                # acknowledgement. Also called by an idle leader (a fetch that brought nothing):
                # without it a leader whose session ended kept pulling from the consumer beside
                # the new one for as long as it was handed nothing.
                await take(intake, lead.still)
            except LostLead:
                raise  # reconnect, and stand by until the lock is ours again
            except Exception as error:  # the outbox could not be written: from the floor again
                log.warning("webhooks: intake stopped: %r; taking again from the ack floor", error)
                await sleep(stop, RETRY_SECONDS)
            finally:
                with contextlib.suppress(Exception):
                    await intake.close()
