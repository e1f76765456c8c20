"""The relay's heartbeat in Postgres, so any process (the API's /ready) can tell it is working.

The relay beats only after a step that went through (a batch published, or the log found
caught up), never merely for being alive: a relay that crash-loops on an event, or hangs in a
publish, stops beating while events wait. Times are the database's own clock on both sides, so
the clocks of the relay's and the API's machines never need to agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, Cursor

TABLE = "relay_status"
DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    beat_at timestamptz NOT NULL,
    published_position bigint NOT NULL
)
"""


@dataclass(frozen=True)
class RelayBeat:
    """The newest heartbeat: how long ago, and the position published by then."""

    age_seconds: float
    published_position: int


def ensure_table(cursor: Cursor[Any]) -> None:
    """Creates the heartbeat table if needed."""
    cursor.execute(DDL)


async def beat(connection: AsyncConnection[Any], published_position: int) -> None:
    """Records that the relay has just made progress (or found nothing to do)."""
    await connection.execute(
        f"INSERT INTO {TABLE} (beat_at, published_position) VALUES (now(), %s) "  # noqa: S608
        "ON CONFLICT (id) DO UPDATE SET beat_at = now(), "
        "published_position = EXCLUDED.published_position",
        (published_position,),
    )


async def published(connection: AsyncConnection[Any]) -> int:
    """The position the newest heartbeat recorded as published (0 if none)."""
    heartbeat = await last_beat(connection)
    return heartbeat.published_position if heartbeat is not None else 0


async def last_beat(connection: AsyncConnection[Any]) -> RelayBeat | None:
    """The newest heartbeat, or None if no relay has ever beaten here."""
    cursor = await connection.execute(
        "SELECT extract(epoch FROM now() - beat_at)::float8, published_position "  # noqa: S608
        f"FROM {TABLE}"
    )
    row = await cursor.fetchone()
    if row is None:
        return None
    values = tuple(row.values()) if isinstance(row, dict) else tuple(row)
    return RelayBeat(float(values[0]), int(values[1]))


def relay_health(
    *, stored: int, published: int, heartbeat: RelayBeat | None, stall_seconds: float
) -> dict[str, Any]:
    """The /ready report on the relay: not ok while events wait and it has not beaten lately."""
    lag = max(0, stored - published)
    age = None if heartbeat is None else round(heartbeat.age_seconds, 1)
    stalled = lag > 0 and (age is None or age > stall_seconds)
    report: dict[str, Any] = {"ok": not stalled, "published": published, "relay_lag": lag}
    report["heartbeat_age_seconds"] = age
    if stalled:
        report["error"] = (
            f"{lag} stored event(s) wait and the relay has not made progress "
            f"for over {stall_seconds:g}s (crash-looping, stopped or stuck)"
        )
    return report
