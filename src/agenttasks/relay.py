"""The relay: every stored event, in notification order, published once to JetStream.

Only the holder of a Postgres advisory lock publishes, so a second relay waits as a standby and
takes over when the first one's session ends. The relay keeps no cursor of its own: it resumes
after the stream's last message, so what it believes was published can never disagree with
what the stream holds. It wakes on the NOTIFY that every eventsourcing append sends, and also
polls once a second in case a notification was missed (e.g. across a reconnect). Our appends'
NOTIFY carries the stored rows (store.py): the relay publishes those without reading the log
back, as long as they continue exactly where it is; anything else (an empty payload, a gap in
the ids) sends it to the read, which is always right.

An event it cannot decode or map is never a reason to stop: it is quarantined (quarantine.py)
and a SkippedEvent marker is published in its place, so the stream stays dense and every
consumer can tell that position will not come. After each step that went through, the relay
beats in Postgres (relay_status.py), which is how /ready tells a working relay from a stuck one.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from uuid import UUID

import msgspec
import psycopg
from eventsourcing.persistence import PersistenceError, StoredEvent
from psycopg.sql import SQL, Identifier

from agenttasks import deletion, quarantine, relay_status
from agenttasks.application.bus_payloads import BusEventMapper
from agenttasks.application.store import EventStore, PositionedEvent, read_log
from agenttasks.application.undecodable import Undecodable, decoded
from agenttasks.bus.connection import Bus
from agenttasks.bus.messages import BusEvent, SkippedEvent
from agenttasks.bus.publisher import PublishFailed
from agenttasks.observability import context, tracing
from agenttasks.observability.traceparent import parse
from agenttasks.outage import Outage

log = logging.getLogger(__name__)

LOCK_KEY = 0x61677474_72656C79 & 0x7FFFFFFFFFFFFFFF  # "agttrely": one relay per database
BATCH = 1000
POLL_SECONDS = 1.0
HEARTBEAT_SECONDS = 1.0  # at most one heartbeat write a second, however busy
PURGE_SECONDS = 1.0  # when idle, deleted tasks' stream messages are looked for this often
CONSUMER = "relay"  # its name in the quarantine table
# Failures of the store itself, not of one event: retried as a whole, never quarantined.
TRANSIENT = (psycopg.Error, OSError, PersistenceError)
# An append's NOTIFY payload: [[notification_id, originator_id, version, topic, base64 state]].
_news_decoder = msgspec.json.Decoder(list[tuple[int, str, int, str, str]])


class Relay:
    """Follows the event store's log and publishes it to the event stream."""

    def __init__(
        self,
        store: EventStore,
        database_url: str,
        bus: Bus,
        mapper: BusEventMapper,
        *,
        stream_replicas: int = 1,
        stream_max_age: float | None = None,
        stream_purge: Callable[[Bus, psycopg.AsyncConnection[Any]], Awaitable[int]] | None = None,
    ) -> None:
        self.store = store
        self.stream_max_age = stream_max_age  # seconds (AGENTTASKS_STREAM_MAX_AGE); None: ever
        # Deleted tasks' messages go from the stream here: the relay owns the stream (deletion.py).
        self.stream_purge = stream_purge
        self._last_purge = 0.0
        # Declared each time it leads: the stream's replicas follow AGENTTASKS_STREAM_REPLICAS.
        self.stream_replicas = stream_replicas
        self.database_url = database_url
        self.bus = bus
        self.mapper = mapper
        self.published_position = 0
        self.is_leader = False
        self.skipped = 0  # events quarantined and replaced by a marker, since start
        self._last_beat = 0.0
        self._select: bytes | None = None  # the log read, built once for its session
        self._cursor: psycopg.AsyncCursor[Any] | None = None
        self._waiting = False  # in _wait_for_news: what a stop cancels
        self.carried = 0  # events published from a NOTIFY's payload, without a read, since start
        self._outage = Outage("relay: Postgres or NATS", log)

    async def run(self, stop: asyncio.Event) -> None:
        """Publishes until `stop` is set, surviving restarts of Postgres and NATS."""
        while not stop.is_set():
            delay = 0.0
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.database_url, autocommit=True
                ) as lock:
                    await self._lead(lock, stop)
            except (*TRANSIENT, PublishFailed, TimeoutError) as error:
                delay = self._outage.failed(error)  # logged once per outage, not per attempt
            finally:
                self.is_leader = False
            await _sleep(stop, delay)

    async def lag(self) -> int:
        """Stored events not yet published (0 when caught up)."""
        newest = await asyncio.to_thread(self.store.recorder.max_notification_id)
        return max(0, (newest or 0) - self.published_position)

    async def _lead(
        self, lock: psycopg.AsyncConnection[tuple[object, ...]], stop: asyncio.Event
    ) -> bool:
        row = await (await lock.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))).fetchone()
        if not row or not row[0]:
            self._outage.restored()
            await _sleep(stop, POLL_SECONDS)  # a standby: another relay leads
            return False
        self.is_leader = True
        log.info("relay: leading")
        channel = getattr(self.store.recorder, "channel_name", None)
        if channel:
            await lock.execute(f'LISTEN "{channel}"')
        await asyncio.to_thread(self._ensure_tables)
        await self.bus.ensure_stream(self.stream_replicas, self.stream_max_age)
        position, sequence = await self.bus.last_published()
        if position == 0 and sequence > 0:
            # The stream has held messages but holds none now (they outlived its max_age):
            # resume after the position the last heartbeat recorded, not from the start.
            position = await relay_status.published(lock)
        self._outage.restored()
        self.published_position = position
        self._last_beat = 0.0
        # One task for the whole leadership ends a wait when `stop` is set: a task for the
        # wait and one for the stop on every wait cost ~24 us a wake-up (docs/performance.md).
        leader = asyncio.current_task()
        watcher = asyncio.ensure_future(stop.wait())
        watcher.add_done_callback(lambda _: self._stop_waiting(stop, leader))
        try:
            await self._publish_until_stopped(lock, stop, position, sequence)
        finally:
            watcher.cancel()
        return True

    def _stop_waiting(self, stop: asyncio.Event, leader: asyncio.Task[Any] | None) -> None:
        if stop.is_set() and self._waiting and leader is not None:
            leader.cancel()  # _wait_for_news takes it back (uncancel) and returns

    async def _publish_until_stopped(
        self,
        lock: psycopg.AsyncConnection[tuple[object, ...]],
        stop: asyncio.Event,
        position: int,
        sequence: int,
    ) -> None:
        news: list[str] = []  # the payloads of the notifications that ended the last wait
        while not stop.is_set():
            carried = self._carried(news, position) if news else None
            if carried is not None:  # the rows came with the notifications: no read
                events, traces, read_up_to = self._batch_of(carried, position)
                self.carried += len(carried)
                at_end = True  # every later commit notifies: waiting is right
            else:
                events, traces, read_up_to = await self._read(lock, position)
                # A short read reached the end of the log (_read stops early only at BATCH).
                at_end = read_up_to - position < BATCH and len(events) < BATCH
            news = []
            if events:
                sequence = await self.bus.publish_in_order(events, sequence, traces)
                self.published_position = events[-1].position
            if read_up_to > position:
                position = read_up_to
                if not at_end:
                    await self._beat(lock)
                    continue
                # At the end: not read again before waiting. Whatever commits after that read
                # sends a NOTIFY this session (LISTENing since it began to lead) holds, so the
                # wait ends at once. The re-read cost a thread hop and a query per wake-up,
                # ~a third of the relay's CPU at 100 creates/s (docs/performance.md).
            self.published_position = position
            await self._beat(lock)
            await self._purge_deleted(lock)
            news = await self._wait_for_news(lock, stop)

    def _carried(self, news: list[str], after: int) -> list[PositionedEvent] | None:
        """The events the payloads carry after `after`; None when the log must be read instead.

        Only a dense continuation is taken: this session LISTENs since before its first read, and
        commits (the table lock held to each one) notify in id order, so the payloads after a
        read hold every later event. A payload left empty (over 8,000 bytes, or an append of
        the library's own), a gap in the ids (a failed insert's, or a notification missed) or
        a payload that does not parse sends the relay to the read, which is always right.
        """
        expected = after + 1
        recorder: Any = self.store.recorder
        uuids = getattr(getattr(recorder, "datastore", None), "originator_id_type", "") == "uuid"
        mapper = self.store.mapper
        items: list[PositionedEvent] = []
        for payload in news:
            if not payload:
                return None
            try:
                rows = _news_decoder.decode(payload)
                for position, originator, version, topic, state in rows:
                    if position < expected:
                        continue  # committed before the last read, which published it
                    if position != expected or len(items) >= BATCH:
                        return None
                    stored = StoredEvent(
                        UUID(originator) if uuids else originator,
                        version,
                        topic,
                        binascii.a2b_base64(state),  # Postgres breaks base64 into lines
                    )
                    items.append(PositionedEvent(position, decoded(mapper, stored)))
                    expected += 1
            except (msgspec.DecodeError, ValueError, binascii.Error):
                return None  # not a payload of ours: the read decides
        return items

    def _ensure_tables(self) -> None:
        with psycopg.connect(self.database_url) as connection, connection.cursor() as cursor:
            quarantine.ensure_table(cursor)
            relay_status.ensure_table(cursor)
            deletion.ensure_table(cursor)

    async def _beat(self, lock: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        now = time.monotonic()
        if now - self._last_beat >= HEARTBEAT_SECONDS:
            await relay_status.beat(lock, self.published_position)
            self._last_beat = now

    async def _purge_deleted(self, connection: psycopg.AsyncConnection[Any]) -> None:
        now = time.monotonic()
        if self.stream_purge is None or now - self._last_purge < PURGE_SECONDS:
            return
        self._last_purge = now
        try:
            purged = await self.stream_purge(self.bus, connection)
        except psycopg.errors.UndefinedTable:
            # No read model has run yet (no tracking table): none has passed a deletion, so
            # nothing is due. Not an outage: re-raised, it cost the relay its leadership every
            # idle second until a projector started (seen in test_relay's poison test).
            return
        except TRANSIENT:
            raise
        except Exception as error:  # e.g. no permission to purge: publishing goes on
            log.warning(
                "relay: cannot purge deleted tasks' messages: %s", quarantine.describe(error)
            )
            return
        if purged:
            log.info("relay: purged the stream messages of %d deleted task(s)", purged)

    async def _read(
        self, session: psycopg.AsyncConnection[tuple[object, ...]], after: int
    ) -> tuple[list[BusEvent], list[str | None], int]:
        """Up to BATCH payloads after `after`, their traceparents, and the last position read.

        Read on the relay's own session, on the event loop: the read through the store's
        pool in a thread cost two thread hops and a pool checkout per wake-up, each a wait for
        a core on a loaded machine (docs/performance.md, "created -> started"). What is left
        blocking here is rare: the first event of a task created before this relay started
        (its facts are loaded once) and a poison event's quarantine row.
        """
        recorder: Any = self.store.recorder
        if not hasattr(recorder, "events_table_name"):  # not Postgres: the store's own reader
            return await asyncio.to_thread(self._next_batch, after)
        if self._select is None:
            self._select = (
                SQL(
                    "SELECT notification_id, originator_id, originator_version, topic, state "
                    "FROM {schema}.{table} WHERE notification_id > %s "
                    "ORDER BY notification_id LIMIT %s"
                )
                .format(
                    schema=Identifier(recorder.datastore.schema),
                    table=Identifier(recorder.events_table_name),
                )
                .as_bytes(session)
            )
        if self._cursor is None or self._cursor.connection is not session:
            self._cursor = session.cursor()  # one per session: a new one per wake-up costs
        cursor = await self._cursor.execute(self._select, (after, BATCH), prepare=True)
        rows: list[Any] = await cursor.fetchall()
        mapper = self.store.mapper
        items = (
            PositionedEvent(
                position,
                decoded(mapper, StoredEvent(originator, version, topic, bytes(state))),
            )
            for position, originator, version, topic, state in rows
        )
        return self._batch_of(items, after)

    def _next_batch(self, after: int) -> tuple[list[BusEvent], list[str | None], int]:
        """Up to BATCH payloads after `after` through the store's reader (in a thread)."""
        return self._batch_of(read_log(self.store, after, batch=BATCH), after)

    def _batch_of(
        self, items: Iterable[PositionedEvent], after: int
    ) -> tuple[list[BusEvent], list[str | None], int]:
        batch: list[BusEvent] = []
        traces: list[str | None] = []
        read_up_to = after
        debug = log.isEnabledFor(logging.DEBUG)
        for item in items:
            read_up_to = item.position
            event = self._payload(item)
            if event is not None:
                batch.append(event)
                traces.append(self._trace(item, event, debug))
            if read_up_to - after >= BATCH or len(batch) >= BATCH:
                break
        return batch, traces, read_up_to

    def _trace(self, item: PositionedEvent, event: BusEvent, debug: bool) -> str | None:
        """The traceparent the event's message carries: the stored one, or our publish span's."""
        stored = getattr(item.event, "trace", None)
        if not debug and (stored is None or not tracing.enabled()):
            # What `emitted` would answer, without the id's text and the attributes built for
            # it: ~1.5 us an event, and every event the API or a worker stores has a trace.
            return stored
        originator = str(item.event.originator_id)
        traceparent = tracing.emitted(
            "relay publish", stored, {"agenttasks.position": item.position, "task.id": originator}
        )
        if debug:  # one line per event only when asked for: publishing must stay cheap
            with context.bound(task=originator, span=parse(traceparent)):
                log.debug("relay: publishing event %d (%s)", item.position, type(event).__name__)
        return traceparent

    def _payload(self, item: PositionedEvent) -> BusEvent | None:
        """The event's payload; a SkippedEvent (and a quarantine entry) if it is poison."""
        if isinstance(item.event, Undecodable):
            return self._skip(item, f"undecodable: {item.event.error}")
        try:
            return self.mapper.map(item.event, item.position)
        except TRANSIENT:
            raise
        except Exception as error:  # e.g. its task's first event does not decode
            return self._skip(item, f"unmappable: {quarantine.describe(error)}")

    def _skip(self, item: PositionedEvent, reason: str) -> SkippedEvent:
        originator = str(item.event.originator_id)
        # Recorded before the marker is published: a marker never goes out unaccounted for.
        with psycopg.connect(self.database_url) as connection, connection.cursor() as cursor:
            quarantine.record(
                cursor,
                consumer=CONSUMER,
                position=item.position,
                originator_id=originator,
                error=reason,
            )
        self.skipped += 1
        with context.bound(task=originator):
            log.error(
                "relay: event %d of %s quarantined and skipped (%s)",
                item.position, originator, reason,
            )  # fmt: skip
        return SkippedEvent(position=item.position, originator_id=originator, reason=reason)

    async def _wait_for_news(
        self, lock: psycopg.AsyncConnection[tuple[object, ...]], stop: asyncio.Event
    ) -> list[str]:
        """The payloads of the notifications that came; [] after a second's silence or a stop."""
        # Any notification, or a second's silence (then poll anyway): both cost nothing when idle.
        # A stop ends the wait at once (the leadership's watcher cancels it; the session is
        # closed right after).
        if stop.is_set():
            return []
        self._waiting = True
        try:
            news = await _notified(lock)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if stop.is_set() and task is not None and task.uncancel() == 0:
                return []  # our watcher's cancel, not the caller's
            raise
        finally:
            self._waiting = False
        if not news:
            await lock.execute("SELECT 1")  # notices a dead session, so leadership ends with it
        return news


async def _notified(lock: psycopg.AsyncConnection[tuple[object, ...]]) -> list[str]:
    """The payloads of the next notifications (those of one packet, or the ones held back)."""
    # Run to its end, not left after the first: stop_after=1 still yields the rest of the
    # packet (or of what came during other queries) before it ends, and each may carry events.
    # An abandoned generator would also hold the connection's lock until a task of its own
    # closed it (an extra turn of the loop before the next query).
    return [n.payload async for n in lock.notifies(timeout=POLL_SECONDS, stop_after=1)]


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
