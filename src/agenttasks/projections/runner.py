"""The live projector: consumes the event stream and applies each batch in one transaction.

The tracking row is locked for the batch, events at or below the tracked position are skipped
(a redelivery changes nothing), and messages are acked only after the commit: at-least-once
delivery, exactly-once effect. A replay's table switch takes the same lock.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
import psycopg

from agenttasks.bus.connection import Bus
from agenttasks.bus.consumers import Delivery, PullConsumer, StreamMissing
from agenttasks.bus.messages import decode
from agenttasks.projections.base import (
    Projection,
    Tables,
    ensure_tables,
    set_position,
    tracked_position,
)

log = logging.getLogger(__name__)

BATCH = 500


class ProjectionRunner:
    """Keeps one projection's live tables up to date from the stream."""

    def __init__(self, projection: Projection, database_url: str, bus: Bus) -> None:
        self.projection = projection
        self.database_url = database_url
        self.bus = bus
        self.position = 0

    def prepare(self, connection: psycopg.Connection[Any]) -> None:
        """Creates the tracking table and the projection's live tables."""
        with connection.transaction(), connection.cursor() as cursor:
            ensure_tables(cursor, [self.projection], [self.projection.live_tables()])
            self.position = tracked_position(cursor, self.projection.name)

    async def run(self, stop: asyncio.Event) -> None:
        """Projects until `stop` is set, reconnecting to Postgres when it goes away."""
        consumer = await self._bind(stop)
        if consumer is None:
            return
        try:
            while not stop.is_set():
                try:
                    with await asyncio.to_thread(_connect, self.database_url) as connection:
                        await asyncio.to_thread(self.prepare, connection)
                        await self._consume(consumer, connection, stop)
                except psycopg.OperationalError as error:
                    log.warning("projector %s: %s; reconnecting", self.projection.name, error)
                    await asyncio.sleep(0.5)
        finally:
            await consumer.close()

    async def _bind(self, stop: asyncio.Event) -> PullConsumer | None:
        while not stop.is_set():
            try:
                return await PullConsumer.bind(self.bus.js, f"projector-{self.projection.name}")
            except StreamMissing:
                await asyncio.sleep(0.2)  # the relay creates the stream when it starts leading
        return None

    async def _consume(
        self, consumer: PullConsumer, connection: psycopg.Connection[Any], stop: asyncio.Event
    ) -> None:
        while not stop.is_set():
            deliveries = await consumer.fetch(BATCH, wait=1.0)
            if not deliveries:
                continue
            await asyncio.to_thread(self.apply_batch, connection, deliveries)
            for delivery in deliveries:
                await delivery.ack()

    def apply_batch(self, connection: psycopg.Connection[Any], deliveries: list[Delivery]) -> None:
        """Applies new events of a batch, and the tracking position, in one transaction."""
        name = self.projection.name
        tables = self.projection.live_tables()
        with connection.transaction(), connection.cursor() as cursor:
            position = tracked_position(cursor, name, lock=True)
            applied = self._apply_new(connection, cursor, tables, deliveries, position)
            if applied > position:
                set_position(cursor, name, applied)
        self.position = applied

    def _apply_new(
        self,
        connection: psycopg.Connection[Any],
        cursor: psycopg.Cursor[Any],
        tables: Tables,
        deliveries: list[Delivery],
        position: int,
    ) -> int:
        # The batch goes to the projection at once: a batch handler folds it into a few
        # statements (the statistics model), others apply event by event. Pipeline mode sends
        # those statements without waiting for each reply.
        name = self.projection.name
        events = []
        applied = position
        for delivery in deliveries:
            try:
                event = decode(delivery.data)
            except msgspec.DecodeError:
                log.error("projector %s: skipping an undecodable message", name)
                continue
            if event.position <= applied:
                continue  # already applied: a redelivery, or a replay got here first
            events.append(event)
            applied = event.position
        if events:
            with connection.pipeline():
                self.projection.apply_many(cursor, tables, events)
        return applied


def _connect(url: str) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(url)
