"""The event store: one eventsourcing Application holding every aggregate of agenttasks.

One application means one notification log, so one relay publishes every event in one order.
It is synchronous (eventsourcing 9.5); async callers go through a thread.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    StoredEvent,
    Transcoder,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg.conninfo import make_conninfo
from psycopg.sql import SQL, Identifier, Literal
from psycopg.types.numeric import Int8

from agenttasks.application.append_lock import AppendLockTimeout, lock_timed_out, timeout_setting
from agenttasks.application.loop_session import session_lost
from agenttasks.application.transcoding import SafeJSONTranscoder
from agenttasks.application.undecodable import decoded

APPLICATION_NAME = "agenttasks"
# Our key in the store's settings (Settings.eventsourcing_env): the append's lock timeout in
# milliseconds, finer than the library's POSTGRES_LOCK_TIMEOUT (whole seconds).
APPEND_LOCK_TIMEOUT_MS = "APPEND_LOCK_TIMEOUT_MS"
# The library creates its tables and functions when the application is constructed; processes
# starting together (API replicas, `up`'s children) collide on that DDL ("tuple concurrently
# updated") even with IF NOT EXISTS, so construction takes this advisory lock first.
STORE_DDL_LOCK = 0x61677474_73746F72  # "agttstor"


class EventStore(Application[UUID]):
    """agenttasks' event-sourced application: aggregates are saved here and only here."""

    name = APPLICATION_NAME

    def construct_transcoder(self) -> Transcoder:
        """Our JSON transcoder: user JSON of any shape reads back as written (transcoding.py)."""
        transcoder = SafeJSONTranscoder()
        self.register_transcodings(transcoder)
        return transcoder


class OrderedAppendRecorder(PostgresApplicationRecorder):
    """The library's recorder with an append in one round trip that keeps its ordering guarantee.

    The library appends in psycopg's pipeline mode: BEGIN, the lock, NOTIFY, the insert and
    COMMIT, whose client-side bookkeeping cost more CPU than the round trips it saves
    (docs/performance.md). Here one server-side function (`<events table>_append`, created with
    the library's tables) takes the EXCLUSIVE table lock, inserts, notifies and returns the
    notification ids, called as one prepared SELECT on the pool's autocommit connection: the
    statement is its own transaction, so the lock is taken before the insert draws its ids and
    held until the commit; ids still commit in order and a tailing reader never passes over a
    gap that fills later. A unique-key clash still surfaces as eventsourcing's IntegrityError.

    The insert also refuses a history that does not continue: an aggregate's events are
    stored only if the version before the first of them is there. The unique key alone
    catches two writers of one version, not a writer whose aggregate's events were deleted
    meanwhile (a finished task purged while a zombie attempt still held it in memory, or a
    start from a message of a task deleted since): without this its events would be appended
    to nothing and leave a history with no Created. Under the table lock the check cannot race.
    """

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        function = f"{self.channel_name}_append"
        self.check_identifier_length(function)
        names = {
            "schema": Identifier(self.datastore.schema),
            "table": Identifier(self.events_table_name),
            "function": Identifier(function),
            "id_type": Identifier(self.datastore.originator_id_type),
            "channel": Literal(self.channel_name),
        }
        # Runs in create_table's transaction, i.e. under open_event_store's DDL lock.
        self.sql_create_statements.append(SQL(_APPEND_FUNCTION).format(**names))
        self._call = SQL("SELECT {schema}.{function}(%s::text, ").format(**names).as_bytes()
        guarded = {**names, "function": Identifier(f"{function}_after")}
        self.check_identifier_length(f"{function}_after")
        self.sql_create_statements.append(SQL(_APPEND_AFTER_FUNCTION).format(**guarded))
        self._call_after = SQL("SELECT {schema}.{function}(%s::text, ").format(**guarded).as_bytes()
        self._statements: dict[tuple[int, ...], bytes] = {}
        self.lock_timeout_setting = f"{self.datastore.lock_timeout}s"
        self.lock_timeout_seconds = float(self.datastore.lock_timeout)

    def set_lock_timeout(self, milliseconds: int) -> None:
        """How long an append waits for the table lock (the library's setting is whole seconds)."""
        self.lock_timeout_setting = timeout_setting(milliseconds)
        self.lock_timeout_seconds = max(1, milliseconds) / 1000

    def insert_events(self, stored_events: Any, **kwargs: Any) -> Any:
        """Appends the events in one transaction; returns their notification ids in order."""
        if self.datastore.enable_db_functions or not stored_events:
            return super().insert_events(stored_events, **kwargs)
        statement, parameters = self.append_call(stored_events)
        try:
            return self._append(statement, parameters)
        except (OperationalError, InterfaceError) as error:
            if not _session_lost(error):
                raise
            # After Postgres restarted, the pool's idle sessions are dead and the first use of
            # each fails: one more try on a checked session. Safe: a save that did commit
            # before its session broke clashes on its versions (IntegrityError) the second
            # time instead of storing twice.
            self.datastore.pool.check()
            return self._append(statement, parameters)

    def _append(self, statement: bytes, parameters: tuple[Any, ...]) -> list[int]:
        try:
            with self.datastore.get_connection() as connection, connection.cursor() as cursor:
                # get_connection turns psycopg's errors into the library's.
                cursor.execute(statement, parameters, prepare=True)
                row = cursor.fetchone()
        except OperationalError as error:
            if lock_timed_out(error):  # the statement rolled back: nothing was stored
                raise AppendLockTimeout(self.lock_timeout_seconds) from None
            raise
        assert row is not None  # a SELECT of a function gives one row
        ids: list[int] = row["ids"]
        return ids

    def append_call(
        self,
        stored_events: Sequence[StoredEvent],
        after: Mapping[Any, int] | None = None,
    ) -> tuple[bytes, tuple[Any, ...]]:
        """The append's SELECT and its parameters: the lock timeout, [the guards,] the columns.

        With `after` (aggregate id -> the notification id its stored previous version must
        have) it calls the guarded append (`append_after_async`).
        """
        columns: tuple[list[Any], ...] = (
            [e.originator_id for e in stored_events],
            # Int8: one parameter type whatever the version, so one prepared statement per shape.
            [Int8(e.originator_version) for e in stored_events],
            [e.topic for e in stored_events],
            [e.state for e in stored_events],
        )
        types: tuple[str, ...] = (self.datastore.originator_id_type, "bigint", "text", "bytea")
        if after is not None:
            columns = (list(after), [Int8(p) for p in after.values()], *columns)
            types = (self.datastore.originator_id_type, "bigint", *types)
        count = max(len(c) for c in columns)
        # Up to FLAT_AT_MOST values per column, one parameter each: psycopg dumps lists slower.
        shape = count if count <= FLAT_AT_MOST else 0
        lengths = tuple(len(c) for c in columns) if shape else ()
        key = (len(columns), *lengths)
        statement = self._statements.get(key)
        if statement is None:
            call = self._call if after is None else self._call_after
            statement = self._statements[key] = call + _columns_sql(lengths, types)
        if shape:
            return statement, (self.lock_timeout_setting, *(v for c in columns for v in c))
        return statement, (self.lock_timeout_setting, *columns)


# Up to this many events an append binds each value as its own parameter (ARRAY[%s, ...]):
# psycopg's list dumpers cost ~20 us an array in binary, ~90 us a bytea[] in text, where a
# scalar costs ~1 us. Longer batches bind four binary arrays (one prepared statement each way).
FLAT_AT_MOST = 8


def _columns_sql(lengths: tuple[int, ...], types: Sequence[str]) -> bytes:
    """The call's array arguments: binary arrays (no lengths) or ARRAY[%s, ...] of each length."""
    # The id type is "uuid" or "text" (checked by the library), the others are ours.
    if not lengths:
        parts = [f"%b::{t}[]".encode() for t in types]
    else:
        parts = [
            ("ARRAY[" + ", ".join(["%s"] * n) + f"]::{t}[]").encode()
            for n, t in zip(lengths, types, strict=True)
        ]
    return b", ".join(parts) + b") AS ids"


# One statement, one transaction: the lock is held until the statement's commit. Nothing is
# inserted unless every aggregate's first version in the batch follows a stored one (or is 1);
# then the count differs and the raise rolls the statement back, NOTIFY included.
# The NOTIFY carries the stored rows (JSON: [[notification_id, originator_id, version, topic,
# base64 state], ...]) when they fit in Postgres's 8,000-byte payload, else nothing: the relay
# publishes from it without reading the log back, and reads when it is empty (relay.py).
_APPEND_FUNCTION = """
CREATE OR REPLACE FUNCTION {schema}.{function}(
    lock_timeout text, ids {id_type}[], versions bigint[], topics text[], states bytea[]
) RETURNS bigint[] LANGUAGE plpgsql AS $append$
DECLARE
    inserted bigint[];
    news text;
    -- Rows are put in the payload only when they can fit (base64 and JSON around each state):
    -- a batch of hundreds would be built to be thrown away.
    carry boolean := (
        SELECT sum(octet_length(s)) * 1.4 + count(*) * 160 < 8000 FROM unnest(states) AS s);
BEGIN
    PERFORM set_config('lock_timeout', lock_timeout, true);
    LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE;
    WITH written AS (
        INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state)
        SELECT * FROM unnest(ids, versions, topics, states)
        WHERE NOT EXISTS (
            SELECT 1 FROM (
                SELECT e.id, min(e.version) AS first_version
                FROM unnest(ids, versions) AS e(id, version) GROUP BY e.id
            ) AS b
            WHERE b.first_version > 1 AND NOT EXISTS (
                SELECT 1 FROM {schema}.{table} AS s
                WHERE s.originator_id = b.id AND s.originator_version = b.first_version - 1))
        RETURNING notification_id, originator_id, originator_version, topic, state
    )
    SELECT array_agg(notification_id ORDER BY notification_id),
        json_agg(json_build_array(notification_id, originator_id, originator_version, topic,
            encode(state, 'base64')) ORDER BY notification_id) FILTER (WHERE carry)::text
    INTO inserted, news FROM written;
    IF coalesce(cardinality(inserted), 0) <> cardinality(ids) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'integrity_constraint_violation',
            MESSAGE = 'an aggregate''s stored history does not continue at the first version'
                || ' saved (its events were deleted meanwhile)';
    END IF;
    PERFORM pg_notify({channel}, CASE WHEN octet_length(news) < 8000 THEN news ELSE '' END);
    RETURN inserted;
END
$append$
"""

# The guarded append (append_after_async): an aggregate's events are stored only if its stored
# previous version has exactly the given notification id and nothing from its first version on
# is stored; otherwise none of ITS events are (NULL ids), and the others still are. Checked
# under the table lock, so no insert can come between the check and this one. The position
# tells a message's Created from the Created of a task deleted and re-created with the same id.
# The generic plan is forced: with arrays as parameters the plan cache kept choosing a custom
# plan, planned again at every call (~0.5 ms of Postgres CPU for a one-start call, measured).
# A session keeps that plan, built on the statistics of its first call: a worker started on a
# young events table had it hash a sequential scan of the whole table at every call until an
# ANALYZE replanned it (PGLIFE: 87 against 29 us an event at 10,000 events). So each aggregate's
# check is one backward probe of the (originator_id, originator_version) key, the newest
# stored version from the one before the first saved (it must be that one, at that position:
# both old checks at once), in a LATERAL ... LIMIT 1 the planner cannot turn into a join, and
# sequential scans are off for the function's statements whatever the statistics say.
_APPEND_AFTER_FUNCTION = """
CREATE OR REPLACE FUNCTION {schema}.{function}(
    lock_timeout text, after_ids {id_type}[], after_positions bigint[],
    ids {id_type}[], versions bigint[], topics text[], states bytea[]
) RETURNS bigint[] LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $append$
DECLARE
    inserted bigint[];
    news text;
    -- Rows are put in the payload only when they can fit (base64 and JSON around each state):
    -- a batch of hundreds would be built to be thrown away.
    carry boolean := (
        SELECT sum(octet_length(s)) * 1.4 + count(*) * 160 < 8000 FROM unnest(states) AS s);
BEGIN
    PERFORM set_config('lock_timeout', lock_timeout, true);
    LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE;
    WITH batch AS (
        SELECT * FROM unnest(ids, versions, topics, states) WITH ORDINALITY
            AS e(id, version, topic, state, n)
    ), fresh AS (
        SELECT b.id FROM (
            SELECT e.id, min(e.version) AS first_version FROM batch AS e GROUP BY e.id
        ) AS b
        JOIN unnest(after_ids, after_positions) AS a(id, position) ON a.id = b.id
        CROSS JOIN LATERAL (
            SELECT s.originator_version, s.notification_id FROM {schema}.{table} AS s
            WHERE s.originator_id = b.id AND s.originator_version >= b.first_version - 1
            ORDER BY s.originator_version DESC LIMIT 1
        ) AS newest
        WHERE newest.originator_version = b.first_version - 1
            AND newest.notification_id = a.position
    ), written AS (
        INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state)
        SELECT e.id, e.version, e.topic, e.state FROM batch AS e
        WHERE e.id IN (SELECT id FROM fresh) ORDER BY e.n
        RETURNING originator_id, originator_version, notification_id, topic, state
    ), notified AS (
        SELECT json_agg(json_build_array(notification_id, originator_id, originator_version,
            topic, encode(state, 'base64')) ORDER BY notification_id) FILTER (WHERE carry)::text
            AS rows
        FROM written
    )
    SELECT array_agg(w.notification_id ORDER BY e.n), (SELECT rows FROM notified)
    INTO inserted, news
    FROM batch AS e LEFT JOIN written AS w
        ON w.originator_id = e.id AND w.originator_version = e.version;
    IF EXISTS (SELECT 1 FROM unnest(inserted) AS i(id) WHERE i.id IS NOT NULL) THEN
        PERFORM pg_notify({channel}, CASE WHEN octet_length(news) < 8000 THEN news ELSE '' END);
    END IF;
    RETURN inserted;
END
$append$
"""


async def append_async(
    connection: psycopg.AsyncConnection[Any],
    recorder: OrderedAppendRecorder,
    stored_events: Sequence[StoredEvent],
) -> list[int]:
    """The recorder's append on an async autocommit connection; the notification ids in order."""
    if not connection.autocommit:
        raise ValueError(
            "append_async needs an autocommit connection (the call is its transaction)"
        )
    if not stored_events:
        return []
    waits = recorder.lock_timeout_seconds
    return await _call_async(connection, waits, *recorder.append_call(stored_events))


async def append_after_async(
    connection: psycopg.AsyncConnection[Any],
    recorder: OrderedAppendRecorder,
    stored_events: Sequence[StoredEvent],
    after: Mapping[Any, int],
) -> list[int | None]:
    """append_async, each aggregate stored only if its stored previous version is at `after[id]`.

    Returns a notification id per event, in order; None for the events of an aggregate whose
    previous version is not stored at that position, or that has a version from its first on
    stored already: none of its events were stored, the other aggregates' were. Two writers
    of one version in the batch are still an IntegrityError (nothing stored).
    """
    if not connection.autocommit:
        raise ValueError(
            "append_after_async needs an autocommit connection (the call is its transaction)"
        )
    if not stored_events:
        return []
    if any(e.originator_id not in after for e in stored_events):
        raise ValueError("every aggregate of a guarded append needs its previous position")
    waits = recorder.lock_timeout_seconds
    return await _call_async(connection, waits, *recorder.append_call(stored_events, after))


async def _call_async(
    connection: psycopg.AsyncConnection[Any],
    waits: float,
    statement: bytes,
    parameters: tuple[Any, ...],
) -> list[Any]:
    """Runs an append function's SELECT; its ids (a version clash: the library's IntegrityError)."""
    try:
        cursor = await connection.execute(statement, parameters, prepare=True)
        row = await cursor.fetchone()
    except psycopg.IntegrityError as error:
        raise IntegrityError(str(error)) from error
    except psycopg.errors.LockNotAvailable:  # the statement rolled back: nothing was stored
        raise AppendLockTimeout(waits) from None
    assert row is not None  # a SELECT of a function gives one row
    ids = row["ids"] if isinstance(row, dict) else row[0]
    return list(ids)


def _session_lost(error: Exception) -> bool:
    """Whether the library's `error` is a session that broke (its cause is psycopg's error)."""
    return session_lost(error.__cause__)


def open_event_store(env: Mapping[str, str] | None = None) -> EventStore:
    """An EventStore configured by `env` (eventsourcing keys); in memory when `env` is None."""
    settings = {"PERSISTENCE_MODULE": "eventsourcing.popo"} if env is None else dict(env)
    if settings.get("PERSISTENCE_MODULE") != "eventsourcing.postgres":
        return EventStore(env=settings)
    settings.setdefault(
        "APPLICATION_RECORDER_TOPIC", f"{__name__}:{OrderedAppendRecorder.__qualname__}"
    )
    with psycopg.connect(_conninfo(settings), autocommit=True) as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (STORE_DDL_LOCK,))
        try:
            store = EventStore(env=settings)
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (STORE_DDL_LOCK,))
    if (milliseconds := settings.get(APPEND_LOCK_TIMEOUT_MS)) and isinstance(
        store.recorder, OrderedAppendRecorder
    ):
        store.recorder.set_lock_timeout(int(milliseconds))
    return store


def _conninfo(settings: Mapping[str, str]) -> str:
    return make_conninfo(
        dbname=settings["POSTGRES_DBNAME"],
        host=settings["POSTGRES_HOST"],
        port=settings["POSTGRES_PORT"],
        user=settings["POSTGRES_USER"],
        password=settings.get("POSTGRES_PASSWORD", ""),
    )


@dataclass(frozen=True)
class PositionedEvent:
    """A stored domain event with its position (notification id) in the application log."""

    position: int
    event: DomainEventProtocol[Any]

    @property
    def timestamp(self) -> datetime:
        """When the event happened."""
        stamp: datetime = getattr(self.event, "timestamp")  # noqa: B009 - not on the protocol
        return stamp


def read_log(store: EventStore, after: int = 0, batch: int = 1000) -> Iterator[PositionedEvent]:
    """Every stored event after `after`, in order, decoded (or Undecodable); stops at the end."""
    while True:
        notifications = store.recorder.select_notifications(
            start=after, limit=batch, inclusive_of_start=False
        )
        if not notifications:
            return
        for notification in notifications:
            # An event that cannot be decoded comes as an Undecodable marker, not an exception.
            yield PositionedEvent(notification.id, decoded(store.mapper, notification))
        if len(notifications) < batch:
            return  # a short page is the end: asking again would only cost a round trip
        after = notifications[-1].id


def history(store: EventStore, aggregate_id: UUID) -> list[PositionedEvent]:
    """One aggregate's events in order with their positions (Undecodable where one fails)."""
    recorder: Any = store.recorder
    if hasattr(recorder, "datastore"):  # Postgres: the positions are columns of the events table
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                f"SELECT notification_id, originator_version, topic, state "  # noqa: S608
                f"FROM {recorder.events_table_name} WHERE originator_id = %s "
                f"ORDER BY originator_version",
                (aggregate_id,),
            )
            rows = cursor.fetchall()
        return [
            PositionedEvent(
                row["notification_id"],
                decoded(
                    store.mapper,
                    StoredEvent(
                        aggregate_id, row["originator_version"], row["topic"], row["state"]
                    ),
                ),
            )
            for row in rows
        ]
    return [item for item in read_log(store) if item.event.originator_id == aggregate_id]


def close(store: EventStore) -> None:
    """Closes the store's connections (a no-op in memory)."""
    with suppress(AttributeError):
        store.factory.close()
