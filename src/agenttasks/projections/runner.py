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
from psycopg.pq import TransactionStatus
from psycopg.types.json import set_json_dumps

from agenttasks import quarantine
from agenttasks.bus.connection import Bus
from agenttasks.bus.consumers import Delivery
from agenttasks.bus.messages import BusEvent, SkippedEvent, decode
from agenttasks.projections.base import (
    BatchHandler,
    Projection,
    Tables,
    Tracking,
    ensure_tables,
    lock_tracking,
    locked_rows,
    send_lock,
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
        self._memo = None if projection.memo is None else projection.memo()

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
        if self._memo is not None:
            self._memo.forget()  # what happened while we were away is not known

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
        preloaded: BatchHandler | None = None,
    ) -> Tracking:
        """Applies what follows `tracked` (its row locked); returns the tracking to record.

        `guarded`: in a savepoint, falling back to one by one (else straight into the caller's
        pipeline, which rolls the whole batch back on any error). `preloaded`: the batch
        handler `_preload` prepared.
        """
        # A row from before sequences were tracked: the projector located one for it.
        sequence = tracked.sequence if tracked.sequence is not None else self.sequence or 0
        position = tracked.position
        events: list[BusEvent] = []
        handles = self.projection.handles
        memo = self._memo
        if memo is not None and tracked != (self.position, self.sequence):
            memo.forget()  # another process (a standby, a replay) applied events we did not see
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
            # The others change nothing here: no statements for them.
            if handles(event) and (memo is None or memo.needed(event)):
                events.append(event)
            position = event.position
        if events:
            if guarded:
                self._apply(connection, cursor, self.projection.live_tables(), events)
            else:
                self.projection.apply_many(cursor, self._tables, events, batch_handler=preloaded)
        return Tracking(position, sequence)

    def _preload(
        self,
        connection: psycopg.Connection[Any],
        deliveries: list[Delivery],
        decoded: dict[int, BusEvent | None],
    ) -> BatchHandler | None:
        """Sends the batch handler's reads (for every event of the batch it handles)."""
        preload = self.projection.preload
        if preload is None:
            return None
        handles = self.projection.handles
        events = [
            event
            for delivery in deliveries
            if (event := decoded.get(delivery.sequence)) is not None and handles(event)
        ]
        return preload(connection, self._tables, events) if events else None

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
    # (A caller with a transaction of its own open gets the batch inside it, the guarded way.)
    idle = connection.info.transaction_status == TransactionStatus.IDLE
    if idle and None not in decoded.values():
        # The common case: one pipeline for the whole batch (BEGIN and the lock, every read
        # model's statements, the tracking and COMMIT), waiting for Postgres only where a
        # handler reads. A savepoint and a sync per read model were most of a small batch's cost.
        try:
            reached = _pipelined(runners, connection, deliveries, decoded)
        except CONNECTION_ERRORS:
            raise
        except Exception:
            # Rolled back whole: apply it again read model by read model, each in a
            # savepoint, so only the bad events are set aside.
            log.warning("a batch failed in one pipeline; applying it read model by read model")
            reached = _together(runners, connection, deliveries, decoded)
    else:
        reached = _together(runners, connection, deliveries, decoded)
    for runner, after in zip(runners, reached, strict=True):
        runner.position, runner.sequence = after


def _pipelined(
    runners: list[ProjectionRunner],
    connection: psycopg.Connection[Any],
    deliveries: list[Delivery],
    decoded: dict[int, BusEvent | None],
) -> list[Tracking]:
    """The batch as one pipeline: Postgres is waited for twice, for the lock's rows and at the end.

    psycopg's own transaction in pipeline mode waits after BEGIN and twice more at COMMIT;
    BEGIN and COMMIT sent as statements of an autocommit session are sent with the rest. Any
    error rolls the whole batch back.
    """
    names = [runner.projection.name for runner in runners]
    autocommit = connection.autocommit
    connection.autocommit = True
    try:
        with connection.pipeline(), connection.cursor() as cursor:
            cursor.execute("BEGIN")
            send_lock(cursor, names)
            # The handlers' reads go right behind the lock, in its round trip: Postgres runs
            # them once the rows are locked, so they see what the last batch committed.
            preloaded = [runner._preload(connection, deliveries, decoded) for runner in runners]
            tracked = locked_rows(cursor, names)
            if tracked is None:  # a first run: the rows were missing, what was read is not used
                preloaded = [None] * len(runners)
                tracked = lock_tracking(cursor, names)
            reached = [
                runner._advance(
                    connection, cursor, tracked[runner.projection.name], deliveries, decoded,
                    guarded=False, preloaded=preload,
                )
                for runner, preload in zip(runners, preloaded, strict=True)
            ]  # fmt: skip
            set_positions(cursor, _moved(runners, tracked, reached))
            cursor.execute("COMMIT")
    except BaseException:
        # The pipeline is synced on the way out: the transaction is open or failed, not lost.
        if not connection.closed and connection.info.transaction_status != TransactionStatus.IDLE:
            connection.execute("ROLLBACK")
        raise
    finally:
        if not connection.closed and not connection.broken:
            connection.autocommit = autocommit
    return reached


def _together(
    runners: list[ProjectionRunner],
    connection: psycopg.Connection[Any],
    deliveries: list[Delivery],
    decoded: dict[int, BusEvent | None],
) -> list[Tracking]:
    """The batch with a savepoint per read model: a bad event is set aside for that one only."""
    with connection.transaction(), connection.cursor() as cursor:
        tracked = lock_tracking(cursor, [runner.projection.name for runner in runners])
        reached = [
            runner._advance(
                connection, cursor, tracked[runner.projection.name], deliveries, decoded
            )
            for runner in runners
        ]
        set_positions(cursor, _moved(runners, tracked, reached))
    return reached


def _moved(
    runners: list[ProjectionRunner], tracked: dict[str, Tracking], reached: list[Tracking]
) -> dict[str, Tracking]:
    return {
        runner.projection.name: after
        for runner, after in zip(runners, reached, strict=True)
        if after != tracked[runner.projection.name]
    }


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
