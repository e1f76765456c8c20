"""The event store: one eventsourcing Application holding every aggregate of agenttasks.

One application means one notification log, so one relay publishes every event in one order.
It is synchronous (eventsourcing 9.5); async callers go through a thread.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import IntegrityError, StoredEvent, Transcoder
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.conninfo import make_conninfo
from psycopg.sql import SQL, Composable, Identifier

from agenttasks.application.transcoding import SafeJSONTranscoder
from agenttasks.application.undecodable import decoded

APPLICATION_NAME = "agenttasks"
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
    """The library's recorder with a cheaper append that keeps its ordering guarantee.

    The library appends in psycopg's pipeline mode: five statements whose client-side
    bookkeeping cost ~0.5 ms of CPU per save here, more than the round trips it saves
    (docs/performance.md). This append sends the same statements in three round trips:
    BEGIN + the EXCLUSIVE table lock + NOTIFY as one simple query, the insert (prepared), and
    COMMIT. The lock is taken before the insert draws its notification ids and held until the
    commit, so ids still commit in order and a tailing reader never passes over a gap that
    fills later; a unique-key clash still surfaces as eventsourcing's IntegrityError.

    The insert also refuses a history that does not continue: an aggregate's events are
    stored only if the version before the first of them is there. The unique key alone
    catches two writers of one version, not a writer whose aggregate's events were deleted
    meanwhile (a finished task purged while a zombie attempt still held it in memory, or a
    start from a message of a task deleted since): without this its events would be appended
    to nothing and leave a history with no Created. Under the table lock the check cannot race.
    """

    _begin_lock_notify: bytes | None = None
    _insert: bytes | None = None

    def insert_events(self, stored_events: Any, **kwargs: Any) -> Any:
        """Appends the events in one transaction; returns their notification ids in order."""
        if self.datastore.enable_db_functions or not stored_events:
            return super().insert_events(stored_events, **kwargs)
        rows = [
            self.construct_pg_stored_event(e.originator_id, e.originator_version, e.topic, e.state)
            for e in stored_events
        ]
        first: dict[Any, int] = {}
        for event in stored_events:
            first[event.originator_id] = min(
                first.get(event.originator_id, event.originator_version), event.originator_version
            )
        continued = [(key, version - 1) for key, version in first.items() if version > 1]
        with self.datastore.get_connection() as connection:
            if self._begin_lock_notify is None or self._insert is None:
                statements = [
                    SQL("BEGIN"),
                    *self.lock_table_statements,
                    SQL("NOTIFY {0}").format(Identifier(self.channel_name)),
                ]
                self._begin_lock_notify = b"; ".join(_as_bytes(q, connection) for q in statements)
                self._insert = _as_bytes(self._continuing_insert(), connection)
            try:
                with connection.cursor() as cursor:
                    cursor.execute(self._begin_lock_notify)
                    cursor.execute(
                        self._insert,
                        (rows, [key for key, _ in continued], [v for _, v in continued]),
                        prepare=True,
                    )
                    ids = [row["notification_id"] for row in cursor.fetchall()]
                if len(ids) != len(rows):
                    raise IntegrityError(
                        "an aggregate's stored history does not continue at the first version"
                        " saved (its events were deleted meanwhile)"
                    )
                connection.execute(b"COMMIT")
            except BaseException:
                with suppress(Exception):  # a broken connection is discarded by the pool
                    connection.execute(b"ROLLBACK")
                raise
        return ids

    def _continuing_insert(self) -> Composable:
        """The library's insert, with nothing inserted when any (id, version) given is missing."""
        return SQL(
            "INSERT INTO {schema}.{table} AS t (originator_id, originator_version, topic, state)"
            " SELECT originator_id, originator_version, topic, state"
            " FROM unnest(%s::{schema}.{stored_event_type}[])"
            " WHERE NOT EXISTS ("
            "  SELECT 1 FROM unnest(%s::{id_type}[], %s::bigint[]) AS before(id, version)"
            "  WHERE NOT EXISTS (SELECT 1 FROM {schema}.{table} AS s"
            "   WHERE s.originator_id = before.id AND s.originator_version = before.version))"
            " RETURNING notification_id"
        ).format(
            schema=Identifier(self.datastore.schema),
            table=Identifier(self.events_table_name),
            stored_event_type=Identifier(self.stored_event_type_name),
            id_type=Identifier(self.datastore.originator_id_type),
        )


def _as_bytes(query: Any, connection: Any) -> bytes:
    return query.as_bytes(connection) if isinstance(query, Composable) else bytes(query)


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
            return EventStore(env=settings)
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (STORE_DDL_LOCK,))


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
