"""Rebuilding a read model from the event store (not from NATS), without downtime.

The rebuild goes into fresh `<table>__rebuild` tables while the live ones keep serving. The
switch happens in one transaction holding the projection's tracking lock (the live runner takes
the same lock per batch): catch the rebuild up to the live position, drop the live tables,
rename the rebuilt ones into place, set the position. Queries see the old tables or the new
ones, never a half-built one. With `verify`, the rebuild is compared with the live tables at the
same position instead, every difference is reported, and nothing is switched.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import Cursor, sql

from agenttasks.application.bus_payloads import BusEventMapper
from agenttasks.application.store import EventStore
from agenttasks.application.undecodable import decoded
from agenttasks.bus.messages import BusEvent
from agenttasks.projections.base import (
    Projection,
    Tables,
    ensure_tables,
    set_position,
    tracked_position,
)
from agenttasks.projections.reading import PayloadReader, batches

Progress = Callable[[int, int, float], None]  # (position, newest position, events per second)


@dataclass
class ReplayReport:
    """What a replay did: events applied, its position, speed, and any differences found."""

    projection: str
    events: int
    position: int
    seconds: float
    switched: bool
    differences: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Events applied per second."""
        return self.events / self.seconds if self.seconds else 0.0


@dataclass
class _Rebuild:
    projection: Projection
    store: EventStore
    mapper: BusEventMapper
    tables: Tables
    events: int = 0
    position: int = 0

    def catch_up(self, cursor: Cursor[Any], up_to: int) -> None:
        applied, self.position = _apply(
            cursor, self.projection, self.tables, self.store, self.mapper, self.position, up_to
        )
        self.events += applied


def replay(
    projection: Projection,
    store: EventStore,
    mapper: BusEventMapper,
    database_url: str,
    *,
    verify: bool = False,
    progress: Progress | None = None,
    verify_wait_seconds: float = 30.0,
) -> ReplayReport:
    """Rebuilds `projection` from the event store, then switches to it (verify: compares)."""
    started = time.perf_counter()
    rebuild = _Rebuild(
        projection, store, mapper, Tables({name: f"{name}__rebuild" for name in projection.ddl})
    )
    with psycopg.connect(database_url) as connection:
        with connection.transaction(), connection.cursor() as cursor:
            ensure_tables(cursor, [projection], [projection.live_tables()])
            for table in rebuild.tables.values():
                cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
            projection.create(cursor, rebuild.tables)
        newest = store.recorder.max_notification_id() or 0
        rebuild.events, rebuild.position = _apply_log(
            connection, projection, rebuild.tables, store, mapper, newest, progress
        )
        if verify:
            differences = _verify(connection, rebuild, time.monotonic() + verify_wait_seconds)
        else:
            _switch(connection, rebuild)
    seconds = time.perf_counter() - started
    report = ReplayReport(projection.name, rebuild.events, rebuild.position, seconds, not verify)
    if verify:
        report.differences = differences
    return report


def _switch(connection: psycopg.Connection[Any], rebuild: _Rebuild) -> None:
    """Catches up to the live position and puts the rebuilt tables in place, atomically."""
    projection = rebuild.projection
    with connection.transaction(), connection.cursor() as cursor:
        live_position = tracked_position(cursor, projection.name, lock=True)
        rebuild.catch_up(cursor, live_position)
        live = projection.live_tables()
        for name in projection.ddl:
            _swap(cursor, live[name], rebuild.tables[name])
        # If the rebuild read further than the live runner got, the runner skips the rest.
        set_position(cursor, projection.name, max(rebuild.position, live_position))


def _verify(connection: psycopg.Connection[Any], rebuild: _Rebuild, deadline: float) -> list[str]:
    """Compares rebuild and live tables at one position; drops the rebuild."""
    projection = rebuild.projection
    while True:
        with connection.transaction(), connection.cursor() as cursor:
            live_position = tracked_position(cursor, projection.name, lock=True)
            if live_position < rebuild.position and not _published_in(
                rebuild, live_position, rebuild.position
            ):
                # Only unpublished events (a Budget.BudgetSet) follow: the live runner never
                # receives them, so its tracking stays before them with nothing left to apply.
                live_position = rebuild.position
            if live_position >= rebuild.position or time.monotonic() >= deadline:
                rebuild.catch_up(cursor, live_position)
                live = projection.live_tables()
                differences = [
                    difference
                    for name in projection.ddl
                    for difference in _compare(cursor, live[name], rebuild.tables[name])
                ]
                if live_position != rebuild.position:
                    differences.insert(
                        0,
                        f"the live tables are at {live_position},"
                        f" the rebuild at {rebuild.position}",
                    )
                for table in rebuild.tables.values():
                    cursor.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))
                return differences
        time.sleep(0.1)  # the live runner is behind the rebuild: give it a moment


def _published_in(rebuild: _Rebuild, after: int, up_to: int) -> bool:
    """Whether any event in (after, up_to] is published, so that the live runner will see it."""
    for batch in batches(rebuild.store, after, up_to):
        for notification in batch:
            event = decoded(rebuild.store.mapper, notification)
            try:
                if rebuild.mapper.map(event, notification.id) is not None:
                    return True
            except Exception:  # the relay publishes a SkippedEvent in its place
                return True
    return False


def _apply_log(
    connection: psycopg.Connection[Any],
    projection: Projection,
    tables: Tables,
    store: EventStore,
    mapper: BusEventMapper,
    newest: int,
    progress: Progress | None,
) -> tuple[int, int]:
    """Applies the whole log, committing every batch of notifications (reading.BATCH).

    Three stages overlap: fetching the next batch (a thread), decoding and mapping this one,
    writing the previous one (a thread; each mostly waits on Postgres, which works on another
    core). One writer, so batches commit in order. The rebuild tables are not live yet, so
    their commits need not wait for the disk; the switch itself commits durably.
    """
    events, position, started = 0, 0, time.perf_counter()
    reader = PayloadReader(projection, store, mapper)

    def write(payloads: list[BusEvent]) -> None:
        with connection.transaction(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
            _write(cursor, projection, tables, payloads)

    with (
        _young_collections_only(),
        ThreadPoolExecutor(1, thread_name_prefix="replay-writer") as writer,
    ):
        pending: Future[None] | None = None
        for batch in batches(store, 0, prefetch=True):
            payloads = reader.payloads(batch)
            gc.collect(1)
            if pending is not None:
                pending.result()
            pending = writer.submit(write, payloads)
            events, position = events + len(batch), batch[-1].id
            if progress:
                rate = events / (time.perf_counter() - started or 1e-9)
                progress(position, max(newest, position), rate)
        if pending is not None:
            pending.result()
    return events, position


@contextmanager
def _young_collections_only() -> Iterator[None]:
    """Turns off automatic garbage collection; the caller collects young generations itself.

    A full collection scans every long-lived object (the mapper's caches hold tens of
    thousands), and the allocations of a rebuild trigger one so often that they cost about a
    fifth of its time. Young collections still free short-lived cycles batch by batch.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _apply(
    cursor: Cursor[Any],
    projection: Projection,
    tables: Tables,
    store: EventStore,
    mapper: BusEventMapper,
    after: int,
    up_to: int | None,
) -> tuple[int, int]:
    """Applies stored events in (after, up_to]; returns (how many, the last position read)."""
    reader = PayloadReader(projection, store, mapper)
    applied, position, payloads = 0, after, []
    for batch in batches(store, after, up_to):
        payloads += reader.payloads(batch)
        applied, position = applied + len(batch), batch[-1].id
    _write(cursor, projection, tables, payloads)
    return applied, position


def _write(
    cursor: Cursor[Any], projection: Projection, tables: Tables, events: list[BusEvent]
) -> None:
    with cursor.connection.pipeline():
        projection.apply_many(cursor, tables, events)


def _swap(cursor: Cursor[Any], live: str, rebuilt: str) -> None:
    cursor.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(live)))
    cursor.execute(
        sql.SQL("ALTER TABLE {} RENAME TO {}").format(sql.Identifier(rebuilt), sql.Identifier(live))
    )
    cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", (live,))
    for (index,) in cursor.fetchall():
        if index.startswith(rebuilt):
            renamed = live + index[len(rebuilt) :]
            cursor.execute(
                sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                    sql.Identifier(index), sql.Identifier(renamed)
                )
            )


def _compare(cursor: Cursor[Any], live: str, rebuilt: str) -> list[str]:
    """Every row that differs between the two tables, keyed by the primary key."""
    key = _primary_key(cursor, live)
    query = sql.SQL(
        "SELECT coalesce(l.k, r.k), l.row, r.row FROM"
        " (SELECT {key}::text AS k, to_jsonb(t) AS row FROM {live} t) l"
        " FULL JOIN (SELECT {key}::text AS k, to_jsonb(t) AS row FROM {rebuilt} t) r ON l.k = r.k"
        " WHERE l.row IS DISTINCT FROM r.row ORDER BY 1"
    ).format(key=sql.Identifier(key), live=sql.Identifier(live), rebuilt=sql.Identifier(rebuilt))
    cursor.execute(query)
    differences = []
    for k, live_row, rebuilt_row in cursor.fetchall():
        if live_row is None:
            differences.append(f"{live} {key}={k}: missing from the live table")
        elif rebuilt_row is None:
            differences.append(f"{live} {key}={k}: in the live table but not in the rebuild")
        else:
            changed = sorted(c for c in live_row if live_row[c] != rebuilt_row.get(c))
            detail = ", ".join(
                f"{c}: live {live_row[c]!r} != rebuilt {rebuilt_row.get(c)!r}" for c in changed
            )
            differences.append(f"{live} {key}={k}: {detail}")
    return differences


def _primary_key(cursor: Cursor[Any], table: str) -> str:
    cursor.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a"
        " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
        " WHERE i.indrelid = %s::regclass AND i.indisprimary",
        (table,),
    )
    row = cursor.fetchone()
    assert row is not None, f"{table} has no primary key"
    return str(row[0])
