"""The relay: every stored event, in notification order, published once to JetStream.

Only the holder of a Postgres advisory lock publishes, so a second relay waits as a standby and
takes over when the first one's session ends. The relay keeps no cursor of its own: it resumes
after the stream's last message, so what it believes was published can never disagree with
what the stream holds. It wakes on the NOTIFY that every eventsourcing append sends, and also
polls once a second in case a notification was missed (e.g. across a reconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg

from agenttasks.application.publishing import BusEventMapper, mapper_for
from agenttasks.application.store import EventStore, read_log
from agenttasks.bus.connection import Bus, ensure_stream
from agenttasks.bus.messages import BusEvent
from agenttasks.bus.publisher import PublishFailed, last_published, publish_in_order

log = logging.getLogger(__name__)

LOCK_KEY = 0x61677474_72656C79 & 0x7FFFFFFFFFFFFFFF  # "agttrely": one relay per database
BATCH = 1000
POLL_SECONDS = 1.0


class Relay:
    """Follows the event store's log and publishes it to the event stream."""

    def __init__(
        self, store: EventStore, database_url: str, bus: Bus, mapper: BusEventMapper | None = None
    ) -> None:
        self.store = store
        self.database_url = database_url
        self.bus = bus
        self.mapper = mapper or mapper_for(store)
        self.published_position = 0
        self.is_leader = False

    async def run(self, stop: asyncio.Event) -> None:
        """Publishes until `stop` is set, surviving restarts of Postgres and NATS."""
        backoff = 0.1
        while not stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.database_url, autocommit=True
                ) as lock:
                    if await self._lead(lock, stop):
                        backoff = 0.1
            except (psycopg.Error, OSError, PublishFailed, TimeoutError) as error:
                log.warning("relay: %s; retrying in %.1fs", error, backoff)
            finally:
                self.is_leader = False
            await _sleep(stop, backoff)
            backoff = min(backoff * 2, 5.0)

    async def lag(self) -> int:
        """Stored events not yet published (0 when caught up)."""
        newest = await asyncio.to_thread(self.store.recorder.max_notification_id)
        return max(0, (newest or 0) - self.published_position)

    async def _lead(
        self, lock: psycopg.AsyncConnection[tuple[object, ...]], stop: asyncio.Event
    ) -> bool:
        row = await (await lock.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))).fetchone()
        if not row or not row[0]:
            await _sleep(stop, POLL_SECONDS)  # a standby: another relay leads
            return False
        self.is_leader = True
        log.info("relay: leading")
        channel = getattr(self.store.recorder, "channel_name", None)
        if channel:
            await lock.execute(f'LISTEN "{channel}"')
        await ensure_stream(self.bus.js)
        position, sequence = await last_published(self.bus.js)
        self.published_position = position
        while not stop.is_set():
            events, read_up_to = await asyncio.to_thread(self._next_batch, position)
            if events:
                sequence = await publish_in_order(self.bus.js, events, sequence)
                self.published_position = events[-1].position
            if read_up_to > position:
                position = read_up_to
                continue
            self.published_position = position
            await self._wait_for_news(lock, stop)
        return True

    def _next_batch(self, after: int) -> tuple[list[BusEvent], int]:
        """Up to BATCH payloads after `after`, and the last position read (skipped ones too)."""
        batch: list[BusEvent] = []
        read_up_to = after
        for item in read_log(self.store, after, batch=BATCH):
            read_up_to = item.position
            event = self.mapper.map(item.event, item.position)
            if event is not None:
                batch.append(event)
            if read_up_to - after >= BATCH or len(batch) >= BATCH:
                break
        return batch, read_up_to

    async def _wait_for_news(
        self, lock: psycopg.AsyncConnection[tuple[object, ...]], stop: asyncio.Event
    ) -> None:
        # Any notification, or a second's silence (then poll anyway): both cost nothing when idle.
        async for _ in lock.notifies(timeout=POLL_SECONDS, stop_after=1):
            return  # the session is alive: it just delivered a notification
        await lock.execute("SELECT 1")  # notices a dead session, so leadership ends with it


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
