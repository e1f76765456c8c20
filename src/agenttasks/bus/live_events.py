"""The NATS side of the live hub: one ordered consumer on every task event from now on.

A thousand browsers must not mean a thousand JetStream consumers: each API process holds this
one subscription and hands every task event to the in-memory hub (live/hub.py), which finds
the connections that want it. The hub starts it when the first stream opens and stops it after
the last one closed; each start begins after the stream's last message at that moment.

The ordered consumer starts after the stream's last message and tracks stream sequences, so a
reset (after a reconnect or a missed heartbeat) neither skips nor repeats an event here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import msgspec
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from agenttasks.bus.ack_subject import NotAnAckSubject, ack_numbers
from agenttasks.bus.connection import Bus
from agenttasks.bus.messages import STREAM, TaskEvent, decode, task_subject

log = logging.getLogger(__name__)

RETRY_SECONDS = 0.5
DELETE_TIMEOUT = 2.0  # seconds a stop waits for the consumer's deletion (the server's own
# inactivity cleanup removes it otherwise)


class LiveTaskEvents:
    """Delivers each task event published after `start` once, in stream order."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._deliver: Callable[[TaskEvent], None] | None = None
        self._sequence = 0  # the last stream sequence handed out: resets never repeat one
        self._subscription: Any = None
        self._starter: asyncio.Task[None] | None = None
        self._generation = 0  # a callback of an earlier subscription delivers nothing

    @property
    def ready(self) -> bool:
        """Whether the subscription exists (it waits for the stream if there is none)."""
        return self._subscription is not None

    async def start(self, deliver: Callable[[TaskEvent], None]) -> None:
        """Subscribes; `deliver` gets every task event published from now on."""
        await self.stop()
        self._deliver = deliver
        try:
            last = (await self._bus.js.stream_info(STREAM)).state.last_seq
        except NotFoundError:
            # The relay creates the stream; until it does nothing can have been published, so
            # everything it will hold is news.
            self._starter = asyncio.create_task(self._subscribe_when_ready())
        else:
            await self._subscribe(last)

    async def stop(self) -> None:
        """Unsubscribes; nothing is delivered afterwards."""
        if self._starter is not None:
            self._starter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starter
            self._starter = None
        self._generation += 1
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            with contextlib.suppress(Exception):  # the connection may be gone already
                await subscription.unsubscribe()
                # Deleted at once rather than by the server once it has seen no interest for
                # a while: a stop and a start must not leave two consumers behind.
                name = getattr(subscription, "_consumer", None)  # nats-py: the current one
                if name:
                    async with asyncio.timeout(DELETE_TIMEOUT):
                        await self._bus.js.delete_consumer(STREAM, name)

    async def _subscribe_when_ready(self) -> None:
        while True:
            await asyncio.sleep(RETRY_SECONDS)
            with contextlib.suppress(NotFoundError):
                await self._subscribe(0)
                return

    async def _subscribe(self, last: int) -> None:
        self._sequence = last
        generation = self._generation

        async def receive(message: Any) -> None:
            if generation == self._generation:
                self._receive(message)

        self._subscription = await self._bus.js.subscribe(
            task_subject(),
            stream=STREAM,
            ordered_consumer=True,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=last + 1
            ),
            cb=receive,
        )

    def _receive(self, message: Any) -> None:
        try:
            _, sequence, _ = ack_numbers(message.reply)
        except NotAnAckSubject as error:  # not a JetStream delivery: no sequence to trust
            log.warning("live events: message passed over: %s", error)
            return
        if sequence <= self._sequence:
            return
        self._sequence = sequence
        try:
            event = decode(message.data)
        except msgspec.DecodeError:
            log.warning("live events: undecodable message at stream sequence %s skipped", sequence)
            return
        if isinstance(event, TaskEvent) and self._deliver is not None:
            self._deliver(event)
