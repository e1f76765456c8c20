"""Quarantine: stored events a consumer could not decode or apply, kept aside so it goes on.

A poison event must never stop the pipeline for everyone else: the consumer that meets one
records it here (once per consumer and position), skips it, and carries on with the next one.
`/ready` reports what is here, and `agenttasks quarantine` lists and retries it.

The error text is ours: exception type names only. A library's message can quote the stored
state (user content), so it is never copied in; the ids are enough to find the event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import Cursor

TABLE = "event_quarantine"
ERROR_MAX_CHARS = 300
CONSUMER_MAX_CHARS = 100
DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    consumer text NOT NULL,
    position bigint NOT NULL,
    originator_id text,
    error text NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 1,
    resolved_at timestamptz,
    PRIMARY KEY (consumer, position)
)
"""
# Concurrent CREATE ... IF NOT EXISTS can still collide on the catalog: one creator at a time.
DDL_LOCK = 0x61677471_7561726E  # "agtquarn"

SUMMARY_SQL = (
    f"SELECT count(*) AS n, max(position) AS newest, max(last_seen) AS seen "  # noqa: S608
    f"FROM {TABLE} WHERE resolved_at IS NULL"
)
_COLUMNS = "consumer, position, originator_id, error, first_seen, last_seen, attempts, resolved_at"


@dataclass(frozen=True)
class Quarantined:
    """One quarantined event, as one consumer met it."""

    consumer: str
    position: int
    originator_id: str | None
    error: str
    first_seen: datetime
    last_seen: datetime
    attempts: int
    resolved_at: datetime | None


@dataclass(frozen=True)
class Summary:
    """What /ready reports: unresolved entries, and the newest of them."""

    count: int
    newest_position: int | None
    newest_seen: datetime | None


def ensure_table(cursor: Cursor[Any]) -> None:
    """Creates the quarantine table if needed (call it inside a transaction)."""
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
    cursor.execute(DDL)


def describe(error: BaseException) -> str:
    """Our text for `error`: its type and its causes' types, never their messages."""
    names: list[str] = []
    current: BaseException | None = error
    while current is not None and len(names) < 4:
        names.append(type(current).__name__)
        current = current.__cause__ or current.__context__
    return " <- ".join(names)


def record(
    cursor: Cursor[Any], *, consumer: str, position: int, originator_id: str | None, error: str
) -> None:
    """Quarantines `position` for `consumer`; a repeat counts an attempt and adds no row."""
    cursor.execute(
        f"INSERT INTO {TABLE} (consumer, position, originator_id, error) "  # noqa: S608
        "VALUES (%s, %s, %s, %s) ON CONFLICT (consumer, position) DO UPDATE SET "
        "error = EXCLUDED.error, last_seen = now(), "
        f"attempts = {TABLE}.attempts + 1, resolved_at = NULL",
        (
            consumer[:CONSUMER_MAX_CHARS],
            position,
            originator_id[:100] if originator_id is not None else None,
            error[:ERROR_MAX_CHARS],
        ),
    )


def resolve(cursor: Cursor[Any], *, consumer: str, position: int) -> None:
    """Marks an entry resolved (its event was processed after all); the row stays as history."""
    cursor.execute(
        f"UPDATE {TABLE} SET resolved_at = now(), attempts = attempts + 1 "  # noqa: S608
        "WHERE consumer = %s AND position = %s AND resolved_at IS NULL",
        (consumer, position),
    )


def pending(
    cursor: Cursor[Any],
    *,
    consumer: str | None = None,
    positions: list[int] | None = None,
    include_resolved: bool = False,
    limit: int = 1000,
) -> list[Quarantined]:
    """Quarantined entries in position order, unresolved only unless asked otherwise."""
    where = ["TRUE"] if include_resolved else ["resolved_at IS NULL"]
    params: list[Any] = []
    if consumer is not None:
        where.append("consumer = %s")
        params.append(consumer)
    if positions is not None:
        where.append("position = ANY(%s)")
        params.append(positions)
    cursor.execute(
        f"SELECT {_COLUMNS} FROM {TABLE} WHERE {' AND '.join(where)} "  # noqa: S608
        "ORDER BY position, consumer LIMIT %s",
        (*params, limit),
    )
    return [Quarantined(*_values(row)) for row in cursor.fetchall()]


def summary(cursor: Cursor[Any]) -> Summary:
    """How many entries are unresolved, and the newest one's position and time."""
    cursor.execute(SUMMARY_SQL)
    count, newest_position, newest_seen = _values(cursor.fetchone())
    return Summary(int(count or 0), newest_position, newest_seen)


def _values(row: Any) -> tuple[Any, ...]:
    # Callers hand in cursors of either row factory (eventsourcing's are dict rows).
    if isinstance(row, dict):
        return tuple(row.values())
    return tuple(row or ())
