"""What a projection is: tables, and one small handler per event kind, pure in the events.

Handlers write through the table names they are given (`Tables`), so the live runner writes
into the live tables and a replay into fresh ones, with the same code. Positions are tracked
per projection in `projection_tracking`, in the same transaction as the rows: the store position
(notification id) applied up to, and the stream sequence of the last message applied (NULL on
rows written before sequences were tracked; the runner finds it again).
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple, Protocol

import msgspec
from psycopg import Connection, Cursor, sql

from agenttasks.bus.messages import BusEvent, PurgedEvent, SkippedEvent, TaskEvent

TRACKING_DDL = (
    """CREATE TABLE IF NOT EXISTS projection_tracking (
        name text PRIMARY KEY,
        position bigint NOT NULL
    )""",
    "ALTER TABLE projection_tracking ADD COLUMN IF NOT EXISTS sequence bigint",
)
NOTIFY_CHANNEL = "agenttasks_projected"


class Tables(dict[str, str]):
    """Logical table name -> the physical table to use now (live or a rebuild)."""

    def id(self, name: str) -> sql.Identifier:
        """The SQL identifier for logical table `name`."""
        return sql.Identifier(self[name])


Handler = Callable[[Cursor[Any], Tables, Any], None]
# Applies a run of events at once (e.g. folding each task's events into one row write); must
# leave exactly the tables that applying the same events one by one leaves.
BatchHandler = Callable[[Cursor[Any], Tables, list[BusEvent]], None]
# Sends a batch handler's reads at once, on a cursor of its own, and returns the batch handler
# that uses their replies (the live runner sends them in the tracking lock's round trip). The
# events may be more than those later applied; the returned handler reads again for itself when
# what it is given is not covered, and after its first call.
Preload = Callable[[Connection[Any], Tables, list[BusEvent]], BatchHandler]


class Memo(Protocol):
    """What a live runner remembers between batches to send fewer statements; never in a replay.

    Facts learned from the events this runner applied in stream order; `forget` is called
    whenever that order was broken (another process moved the tracking, a reconnect).
    """

    def forget(self) -> None:
        """Drops everything remembered."""

    def needed(self, event: BusEvent) -> bool:
        """False when applying `event` is known to change no row (and learns from it)."""


@dataclass
class Projection:
    """A read model: its tables' DDL (with `{table}` placeholders) and its event handlers."""

    name: str
    ddl: Mapping[str, list[str]]  # logical table -> statements; "{t}" is the physical name
    task_handlers: dict[str, Handler] = field(default_factory=dict)  # kind -> handler
    template_handlers: dict[str, Handler] = field(default_factory=dict)
    batch_handler: BatchHandler | None = None
    # A deleted task (PurgedEvent): drops the task's rows, keeps what the model keeps of it.
    purge_handler: Handler | None = None
    preload: Preload | None = None  # the batch handler's reads, sent ahead (live runner only)
    memo: Callable[[], Memo] | None = None  # a live runner's memo (one per runner)

    def live_tables(self) -> Tables:
        """The tables queries read and the live runner writes."""
        return Tables({name: name for name in self.ddl})

    def create(self, cursor: Cursor[Any], tables: Tables) -> None:
        """Creates the tables if they do not exist yet.

        In the DDL, `{t}` is the physical table and `{t_xyz}` the index `<table>_xyz_idx`.
        """
        for name, statements in self.ddl.items():
            physical = tables[name]
            for statement in statements:
                fields = {f for _, f, _, _ in string.Formatter().parse(statement) if f}
                names = {f: sql.Identifier(f"{physical}{f[1:]}_idx") for f in fields - {"t"}}
                cursor.execute(sql.SQL(statement).format(t=tables.id(name), **names))

    def apply(self, cursor: Cursor[Any], tables: Tables, event: BusEvent) -> None:
        """Applies one event (events of kinds it does not handle change nothing)."""
        if isinstance(event, SkippedEvent):
            return  # a stored event nobody could read: no rows
        if isinstance(event, PurgedEvent):
            if self.purge_handler is not None:
                self.purge_handler(cursor, tables, event)
            return
        handlers = self.task_handlers if isinstance(event, TaskEvent) else self.template_handlers
        handler = handlers.get(event.type)
        if handler is not None:
            handler(cursor, tables, event)

    def handles(self, event: BusEvent) -> bool:
        """Whether `event` changes this read model at all."""
        if isinstance(event, SkippedEvent):
            return False
        if isinstance(event, PurgedEvent):
            return self.purge_handler is not None
        handlers = self.task_handlers if isinstance(event, TaskEvent) else self.template_handlers
        return event.type in handlers

    def apply_many(
        self,
        cursor: Cursor[Any],
        tables: Tables,
        events: list[BusEvent],
        *,
        batch_handler: BatchHandler | None = None,
    ) -> None:
        """Applies events in order: through the batch handler if there is one, else one by one.

        A deleted task's PurgedEvent goes to the purge handler between the runs before and
        after it, so a batch handler never folds a task's events across its deletion.
        `batch_handler`: the one `preload` returned, in place of the projection's own.
        """
        handler = batch_handler or self.batch_handler
        if handler is None:
            for event in events:
                self.apply(cursor, tables, event)
            return
        run: list[BusEvent] = []
        for event in events:
            if isinstance(event, PurgedEvent):
                if run:
                    handler(cursor, tables, run)
                    run = []
                self.apply(cursor, tables, event)
            else:
                run.append(event)
        if run:
            handler(cursor, tables, run)


DDL_LOCK = 0x61677474_64646C  # concurrent CREATE ... IF NOT EXISTS can still collide: serialise


def ensure_tables(cursor: Cursor[Any], projections: list[Projection], tables: list[Tables]) -> None:
    """Creates the tracking table and the given tables if needed, one creator at a time."""
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
    for statement in TRACKING_DDL:
        cursor.execute(statement)
    for projection, physical in zip(projections, tables, strict=True):
        projection.create(cursor, physical)


class Tracking(NamedTuple):
    """How far a projection got: store position, and stream sequence (None: not known yet)."""

    position: int
    sequence: int | None


def tracking(cursor: Cursor[Any], name: str, *, lock: bool = False) -> Tracking:
    """Projection `name`'s tracking row (created at 0, 0 if missing), optionally locked."""
    cursor.execute(
        "INSERT INTO projection_tracking (name, position, sequence) VALUES (%s, 0, 0)"
        " ON CONFLICT DO NOTHING",
        (name,),
    )
    query = "SELECT position, sequence FROM projection_tracking WHERE name = %s"
    cursor.execute(query + (" FOR UPDATE" if lock else ""), (name,))
    row = cursor.fetchone()
    if row is None:
        return Tracking(0, 0)
    return Tracking(int(row[0]), None if row[1] is None else int(row[1]))


def lock_tracking(cursor: Cursor[Any], names: list[str]) -> dict[str, Tracking]:
    """The tracking rows of `names` (created at 0, 0 if missing), locked in name order.

    Whoever locks several rows locks them in this order, so two lockers never deadlock.
    """
    send_lock(cursor, names)
    locked = locked_rows(cursor, names)
    if locked is not None:
        return locked
    # A first run: create them (prepare() usually has), then lock them all.
    cursor.execute(
        "INSERT INTO projection_tracking (name, position, sequence)"
        " SELECT unnest(%s::text[]), 0, 0 ON CONFLICT DO NOTHING",
        (names,),
    )
    send_lock(cursor, names)
    locked = locked_rows(cursor, names)
    assert locked is not None, "the tracking rows were just created"
    return locked


def send_lock(cursor: Cursor[Any], names: list[str]) -> None:
    """Sends the lock of `names`' tracking rows; `locked_rows` waits for it.

    In pipeline mode, statements sent in between run after the lock is granted and share its
    round trip.
    """
    cursor.execute(_lock_query(tuple(names)))


def locked_rows(cursor: Cursor[Any], names: list[str]) -> dict[str, Tracking] | None:
    """The rows `send_lock` locked; None when one is missing (`lock_tracking` creates them)."""
    rows = cursor.fetchall()
    if len(rows) < len(set(names)):
        return None
    return {
        str(name): Tracking(int(position), None if sequence is None else int(sequence))
        for name, position, sequence in rows
    }


@lru_cache(maxsize=32)
def _lock_query(names: tuple[str, ...]) -> str:
    # The names are the projector's own, the same every batch: bound into the text once
    # (dumping a list parameter per batch was a visible part of a small batch's cost).
    return (
        sql.SQL(
            "SELECT name, position, sequence FROM projection_tracking WHERE name = ANY({})"
            " ORDER BY name FOR UPDATE"
        )
        .format(sql.Literal(list(names)))
        .as_string(None)
    )


_encoder = msgspec.json.Encoder()


def set_positions(cursor: Cursor[Any], moved: Mapping[str, Tracking]) -> None:
    """Records several projections' tracking in one statement, and announces them (one NOTIFY)."""
    if not moved:
        return
    # One JSON text rather than three array parameters: encoded and parsed in C.
    rows = [[name, tracked.position, tracked.sequence] for name, tracked in moved.items()]
    # The rows are locked (lock_tracking), so each UPDATE finds its row; one message for the
    # batch rather than one per read model: every API's watcher wakes once.
    cursor.execute(
        "WITH m AS (SELECT r->>0 AS name, (r->>1)::bigint AS position,"
        " (r->>2)::bigint AS sequence FROM json_array_elements(%s::json) AS r),"
        " u AS (UPDATE projection_tracking t SET position = m.position, sequence = m.sequence"
        " FROM m WHERE t.name = m.name)"
        " SELECT pg_notify(%s, %s)",
        (
            _encoder.encode(rows).decode(),
            NOTIFY_CHANNEL,
            announcement({name: tracked.position for name, tracked in moved.items()}),
        ),
    )


def announcement(positions: Mapping[str, int]) -> str:
    """The NOTIFY payload saying where projections got: `names:position` groups, `;` apart.

    The names of one position are `,` apart: `metrics,statistics,tasks:12`. A single
    `name:position` (what a replay's switch sends, and every payload before one NOTIFY per
    batch) is the one-group case. Read back by `read_announcement`.
    """
    groups: dict[int, list[str]] = {}
    for name, position in positions.items():
        groups.setdefault(position, []).append(name)
    return ";".join(f"{','.join(sorted(names))}:{position}" for position, names in groups.items())


def read_announcement(payload: str) -> list[tuple[str, int]]:
    """(name, position) of each projection a NOTIFY payload announces (malformed parts: none)."""
    announced: list[tuple[str, int]] = []
    for group in payload.split(";"):
        names, _, position = group.rpartition(":")
        if not names or not position.isdigit():
            continue
        announced.extend((name, int(position)) for name in names.split(",") if name)
    return announced


def tracked_position(cursor: Cursor[Any], name: str, *, lock: bool = False) -> int:
    """The position projection `name` has applied up to (0 if none), optionally locking it."""
    return tracking(cursor, name, lock=lock).position


def set_position(
    cursor: Cursor[Any], name: str, position: int, sequence: int | None = None
) -> None:
    """Records that projection `name` has applied everything up to `position`, and says so.

    `sequence` (the stream sequence of the last message applied) is left as it is when None:
    a replay knows store positions only, and the runner then passes over the messages the
    replay covered (their positions are at or below the tracked one).
    """
    if sequence is None:
        cursor.execute(
            "UPDATE projection_tracking SET position = %s WHERE name = %s", (position, name)
        )
    else:
        cursor.execute(
            "UPDATE projection_tracking SET position = %s, sequence = %s WHERE name = %s",
            (position, sequence, name),
        )
    cursor.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, f"{name}:{position}"))
