"""The live projector: one in-order stream reader feeding every projection of the process.

The reader starts after the lowest tracked sequence of its runners and hands each batch to
all of them at once, on one connection, in one transaction (runner.apply_together: each read
model skips what its own tracking row says it has, and applies the rest in a savepoint of its
own). One commit per batch, not one per read model, keeps a batch of one event (the common
case at a hundred creates a second) cheap. After each batch, if the reader is not where the
slowest runner needs it (a runner stopped at missing messages, the connection was lost, or a
standby moved a tracking row ahead), the reader seeks there. So whatever dies when, every
projection resumes from exactly the message after its tracking, and no message is passed over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import msgspec
import psycopg

from agenttasks.bus.connection import Bus
from agenttasks.bus.consumers import (
    BusUnavailable,
    Delivery,
    StreamMissing,
    StreamReader,
)
from agenttasks.observability import tracing
from agenttasks.outage import Outage
from agenttasks.projections.runner import CONNECTION_ERRORS, ProjectionRunner, apply_together
from agenttasks.stoppable import Stopped, unless_stopped

log = logging.getLogger(__name__)

BATCH = 500
RETRY_SECONDS = 0.5


class _Position(msgspec.Struct):
    position: int = 0


class _Subject(msgspec.Struct):
    position: int = 0
    task_id: str | None = None
    template_id: str | None = None


class Projector:
    """Runs the given projection runners from one stream reader until stopped."""

    def __init__(self, runners: list[ProjectionRunner], bus: Bus, *, batch: int = BATCH) -> None:
        self.runners = runners
        self.bus = bus
        self.batch = batch
        self.reader: StreamReader | None = None
        self.connection: psycopg.Connection[Any] | None = None  # shared by the runners
        # Each kind of outage is logged once when it starts and once when it ends.
        self._nats = Outage("projector: NATS", log)
        self._postgres = Outage("projector: Postgres", log)

    async def run(self, stop: asyncio.Event) -> None:
        """Projects until `stop` is set, reconnecting to Postgres and NATS when they go away."""
        try:
            while not stop.is_set():
                try:
                    await self._connect_all(stop)
                    if self.reader is None:
                        self.reader = await self.bus.open_reader("projector", self._wanted())
                        await self._forget_durables()
                    await self._step(stop)
                    self._nats.restored()
                except StreamMissing:
                    await asyncio.sleep(0.2)  # the relay creates the stream when it first leads
                except BusUnavailable as error:
                    await asyncio.sleep(self._nats.failed(error))
        finally:
            if self.reader is not None:
                await self.reader.close()
            self._close()

    async def _forget_durables(self) -> None:
        # Before stream sequences were tracked, each read model had a durable consumer; the
        # tracking rows are the cursor now, and a durable left behind only holds server state.
        for runner in self.runners:
            await self.bus.delete_consumer(runner.consumer)

    def _wanted(self) -> int:
        return min(runner.sequence or 0 for runner in self.runners) + 1

    async def _step(self, stop: asyncio.Event) -> None:
        reader = self.reader
        assert reader is not None
        try:
            # An idle fetch waits a second; a stop need not (nothing is acked: the tracking
            # rows are the cursor, so a cancelled fetch loses nothing).
            deliveries = await unless_stopped(stop, reader.fetch(self.batch, wait=1.0))
        except Stopped:
            return
        before = [runner.sequence for runner in self.runners]
        if deliveries:
            await self._apply(deliveries)
        wanted = self._wanted()
        if wanted != reader.next_sequence:
            if before == [runner.sequence for runner in self.runners]:
                await asyncio.sleep(RETRY_SECONDS)  # stuck (missing messages, no database)
            await reader.seek(wanted)

    async def _apply(self, deliveries: list[Delivery]) -> None:
        connection = self.connection
        if connection is None:
            return
        try:
            await asyncio.to_thread(apply_together, self.runners, connection, deliveries)
        except CONNECTION_ERRORS as error:
            self._postgres.failed(error)  # _connect_all paces the reconnects
            self._close()
            return
        if tracing.enabled() or log.isEnabledFor(logging.DEBUG):
            for runner in self.runners:
                _traced(runner.consumer, deliveries)

    async def _connect_all(self, stop: asyncio.Event) -> None:
        while self.connection is None and not stop.is_set():
            try:
                connection = await asyncio.to_thread(_connect, self.runners[0].database_url)
                self.connection = connection
                for runner in self.runners:
                    await asyncio.to_thread(runner.prepare, connection)
            except CONNECTION_ERRORS as error:
                self._close()
                await asyncio.sleep(self._postgres.failed(error))
                continue
            for runner in self.runners:
                if runner.sequence is None:
                    runner.sequence = await locate(self.bus, runner.position)
                    log.info(
                        "%s: tracking from before stream sequences: position %s is at %s",
                        runner.consumer, runner.position, runner.sequence,
                    )  # fmt: skip
        if self.connection is not None:
            self._postgres.restored()

    def _close(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(psycopg.Error):
                self.connection.close()
            self.connection = None


async def locate(bus: Bus, position: int) -> int:
    """The last stream sequence whose event is at or below store `position` (0: none).

    Binary search over the stream (its positions grow with its sequence): for a tracking row
    kept before sequences were, so the runner need not read the whole stream again. Every
    message at or below the answer was applied (its position is at most the tracked one).
    """
    if position <= 0:
        return 0
    first, last = await bus.stream_bounds()
    if last == 0:
        return 0
    low, high = first - 1, last  # the answer is in [low, high]
    probe = await bus.open_reader("projector-locate", max(1, low))
    try:
        while low < high:
            middle = (low + high + 1) // 2
            await probe.seek(middle)
            found = await probe.fetch(1, wait=2.0)
            if not found:
                high = middle - 1
                continue
            at = msgspec.json.decode(found[0].data, type=_Position).position
            if at <= position:
                low = found[0].sequence  # may be past `middle` only across missing messages
            else:
                high = middle - 1
        return low
    finally:
        await probe.close()


def _traced(consumer: str, deliveries: list[Delivery]) -> None:
    """A span (and, at DEBUG, a line) per applied event, in the trace its message carries."""
    for delivery in deliveries:
        if delivery.traceparent is None:
            continue
        try:
            about = msgspec.json.decode(delivery.data, type=_Subject)
        except msgspec.DecodeError:
            continue  # the runner quarantined it already
        task = about.task_id or about.template_id
        attributes = {"agenttasks.position": about.position, "agenttasks.read_model": consumer}
        parent = delivery.traceparent
        with tracing.span("projector apply", parent, task=task, attributes=attributes):
            log.debug("%s: applied event %d", consumer, about.position)


def _connect(url: str) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(url)
