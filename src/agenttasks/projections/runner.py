"""One projection's live side: applies a batch of stream messages, and its tracking, at once.

The tracking row holds the store position applied up to and the stream sequence of the last
message applied, and is locked for the batch (standby replicas and a replay's switch take the
same lock). A batch is applied from exactly the message after the tracked sequence: messages
at or below it are skipped (a standby or a repeat got there first), and the stream sequence is
dense, so a message further on means the ones in between are missing. Those are never
skipped: the batch stops there, the tracking stays, and the projector reads again from the
tracked sequence. A crash anywhere loses nothing: rows and tracking commit together, and the
next run starts after what was committed. `projector.py` feeds batches to runners.

The runners of one projector share one transaction per batch (`apply_together`): each read
model keeps its own tracking row, and all commit (or roll back) together. The batch is first
sent as one pipeline (a few round trips in all); if an event's data breaks it, it is rolled
back and applied again with a savepoint per read model, so one model's bad event is set aside
without touching the others.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
import psycopg
from psycopg.types.json import set_json_dumps

from agenttasks import quarantine
from agenttasks.bus.connection import Bus
from agenttasks.bus.consumers import Delivery
from agenttasks.bus.messages import BusEvent, SkippedEvent, decode
from agenttasks.projections.base import (
    Projection,
    Tables,
    Tracking,
    ensure_tables,
    lock_tracking,
    set_positions,
    tracking,
)

log = logging.getLogger(__name__)

# A lost connection (or a deadlock, a cancel) is retried with the whole batch; anything else
# while applying is the event's data, and only that event is set aside.
CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)


class _Position(msgspec.Struct):
    position: int = 0


_json_dumps = msgspec.json.Encoder().encode


class ProjectionRunner:
    """Keeps one projection's live tables up to date from the stream."""

    def __init__(self, projection: Projection, database_url: str, bus: Bus | None = None) -> None:
        self.projection = projection
        self.database_url = database_url
        self.bus = bus
        self.position = 0
        self.sequence: int | None = 0  # None: a tracking row from before sequences were kept
        self.missing: tuple[int, int] | None = None  # stream sequences the stream lacks
        self._tables = projection.live_tables()

    @property
    def consumer(self) -> str:
        """This projection's name as a consumer (in quarantine entries and logs)."""
        return f"projector-{self.projection.name}"

    def prepare(self, connection: psycopg.Connection[Any]) -> None:
        """Creates the tracking table and the live tables; reads the tracking row."""
        # jsonb parameters (task configs, results) encoded by msgspec, in C, not json.dumps.
        set_json_dumps(_json_dumps, connection)
        with connection.transaction(), connection.cursor() as cursor:
            ensure_tables(cursor, [self.projection], [self.projection.live_tables()])
            quarantine.ensure_table(cursor)
            tracked = tracking(cursor, self.projection.name)
        self.position, self.sequence = tracked

    async def run(self, stop: asyncio.Event) -> None:
        """Projects until `stop` is set (a projector of this one projection)."""
        from agenttasks.projections.projector import Projector

        assert self.bus is not None, "a runner needs the bus to run"
        await Projector([self], self.bus).run(stop)

    def apply_batch(self, connection: psycopg.Connection[Any], deliveries: list[Delivery]) -> None:
        """Applies the batch's messages that follow the tracked sequence, in one transaction."""
        apply_together([self], connection, deliveries)

    def _advance(
        self,
        connection: psycopg.Connection[Any],
        cursor: psycopg.Cursor[Any],
        tracked: Tracking,
        deliveries: list[Delivery],
        decoded: dict[int, BusEvent | None],
        *,
        guarded: bool = True,
    ) -> Tracking:
        """Applies what follows `tracked` (its row locked); returns the tracking to record.

        `guarded`: in a savepoint, falling back to one by one (else straight into the caller's
        pipeline, which rolls the whole batch back on any error).
        """
        # A row from before sequences were tracked: the projector located one for it.
        sequence = tracked.sequence if tracked.sequence is not None else self.sequence or 0
        position = tracked.position
        events: list[BusEvent] = []
        handles = self.projection.handles
        for delivery in deliveries:
            if delivery.sequence <= sequence:
                continue  # applied already (by a standby, or read twice after a seek)
            event = self._decode(connection, cursor, delivery, decoded)
            if delivery.sequence != sequence + 1 and not _covered(event, position):
                self._missing(sequence + 1, delivery.sequence - 1)
                break
            self.missing = None
            sequence = delivery.sequence
            if event is None:
                continue  # undecodable: quarantined, its sequence passed
            if isinstance(event, SkippedEvent) or event.position <= position:
                # A marker for a stored event nobody can read, or an event a replay has
                # applied already: its position counts as applied, no rows change.
                position = max(position, event.position)
                continue
            if handles(event):  # the others change nothing here: no statements for them
                events.append(event)
            position = event.position
        if events:
            if guarded:
                self._apply(connection, cursor, self.projection.live_tables(), events)
            else:
                self.projection.apply_many(cursor, self._tables, events)
        return Tracking(position, sequence)

    def _decode(
        self,
        connection: psycopg.Connection[Any],
        cursor: psycopg.Cursor[Any],
        delivery: Delivery,
        decoded: dict[int, BusEvent | None],
    ) -> BusEvent | None:
        # Decoded once per batch for every runner; each runner quarantines for itself.
        if delivery.sequence not in decoded:
            try:
                decoded[delivery.sequence] = decode(delivery.data)
            except msgspec.DecodeError:
                decoded[delivery.sequence] = None
        event = decoded[delivery.sequence]
        if event is None:
            try:
                position = msgspec.json.decode(delivery.data, type=_Position).position
            except msgspec.DecodeError:
                position = 0
            log.error(
                "%s: undecodable message at stream sequence %s", self.consumer, delivery.sequence
            )
            with connection.transaction():
                quarantine.record(
                    cursor,
                    consumer=self.consumer,
                    position=position or -delivery.sequence,  # negative: a stream sequence
                    originator_id=None,
                    error=f"undecodable message at stream sequence {delivery.sequence}",
                )
            return None
        return event

    def _missing(self, first: int, last: int) -> None:
        if self.missing != (first, last):
            log.error(
                "%s: the stream lacks sequences %s..%s; the read model waits there until "
                "`agenttasks replay %s` covers them",
                self.consumer, first, last, self.projection.name,
            )  # fmt: skip
        self.missing = (first, last)

    def _apply(
        self,
        connection: psycopg.Connection[Any],
        cursor: psycopg.Cursor[Any],
        tables: Tables,
        events: list[BusEvent],
    ) -> None:
        # The batch goes to the projection at once: a batch handler folds it into a few
        # statements (the statistics model), others apply event by event. Pipeline mode sends
        # those statements without waiting for each reply. If an event's data breaks the
        # batch, the events go again one by one, each in its own savepoint, and the ones that
        # fail are quarantined: the read model goes on instead of crash-looping on them.
        try:
            with connection.transaction(), connection.pipeline():
                self.projection.apply_many(cursor, tables, events)
            return
        except CONNECTION_ERRORS:
            raise
        except Exception:
            log.warning("%s: a batch failed; applying its events one by one", self.consumer)
        for event in events:
            try:
                with connection.transaction():
                    self.projection.apply_many(cursor, tables, [event])
            except CONNECTION_ERRORS:
                raise
            except Exception as error:
                log.error("%s: event %s quarantined", self.consumer, event.position)
                with connection.transaction():
                    quarantine.record(
                        cursor,
                        consumer=self.consumer,
                        position=event.position,
                        originator_id=_originator(event),
                        error=quarantine.describe(error),
                    )


def apply_together(
    runners: list[ProjectionRunner],
    connection: psycopg.Connection[Any],
    deliveries: list[Delivery],
) -> None:
    """Applies a batch to every runner's read model in one transaction, each tracked apart.

    The tracking rows are locked together, in name order (standbys and a replay's switch wait
    on them; an order shared by every locker cannot deadlock); each runner skips what its own
    row says it has; the rows that moved are written at once. A lost connection rolls the
    whole batch back, and every runner reads it again from its tracking.
    """
    decoded = _decode_all(deliveries)
    if None not in decoded.values():
        # The common case: one pipeline for the whole batch (BEGIN and the lock, every read
        # model's statements, the tracking and COMMIT), waiting for Postgres only where a
        # handler reads. A savepoint and a sync per read model were most of a small batch's cost.
        try:
            with connection.pipeline():
                reached = _together(runners, connection, deliveries, decoded, guarded=False)
        except CONNECTION_ERRORS:
            raise
        except Exception:
            # Rolled back whole: apply it again read model by read model, each in a
            # savepoint, so only the bad events are set aside.
            log.warning("a batch failed in one pipeline; applying it read model by read model")
            reached = _together(runners, connection, deliveries, decoded, guarded=True)
    else:
        reached = _together(runners, connection, deliveries, decoded, guarded=True)
    for runner, after in zip(runners, reached, strict=True):
        runner.position, runner.sequence = after


def _together(
    runners: list[ProjectionRunner],
    connection: psycopg.Connection[Any],
    deliveries: list[Delivery],
    decoded: dict[int, BusEvent | None],
    *,
    guarded: bool,
) -> list[Tracking]:
    reached: list[Tracking] = []
    with connection.transaction(), connection.cursor() as cursor:
        tracked = lock_tracking(cursor, [runner.projection.name for runner in runners])
        for runner in runners:
            before = tracked[runner.projection.name]
            reached.append(
                runner._advance(connection, cursor, before, deliveries, decoded, guarded=guarded)
            )
        moved = {
            runner.projection.name: after
            for runner, after in zip(runners, reached, strict=True)
            if after != tracked[runner.projection.name]
        }
        set_positions(cursor, moved)
    return reached


def _decode_all(deliveries: list[Delivery]) -> dict[int, BusEvent | None]:
    """Each message decoded once for every runner (None: undecodable, quarantined per runner)."""
    decoded: dict[int, BusEvent | None] = {}
    for delivery in deliveries:
        try:
            decoded[delivery.sequence] = decode(delivery.data)
        except msgspec.DecodeError:
            decoded[delivery.sequence] = None
    return decoded


def _covered(event: BusEvent | None, position: int) -> bool:
    """Whether everything before `event` is applied already (a replay went past the gap)."""
    return event is not None and event.position <= position


def _originator(event: BusEvent) -> str | None:
    return getattr(event, "task_id", None) or getattr(event, "template_id", None)
