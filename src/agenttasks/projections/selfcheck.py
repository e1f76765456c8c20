"""The projector's self-check: is each read model keeping up, and does it hold every row?

Now and then (cheap: one max(), one stream info) each projection's tracking is compared with
the store's newest position and with the stream: a projection with published messages it has
not applied (`pending`) whose tracking has not moved since the previous check is stalled
(missing messages, a crash loop, no database). At a lower rate, rows are counted against the
store at the tracked position, in one snapshot: tasks in the read model vs. `Task.Created`
events, which is what catches an event passed over for good. Results go to the log and to
`projection_health`, which `/ready` reads (api/health.py, read_model_health).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from eventsourcing.utils import get_topic
from psycopg import sql

from agenttasks.bus.connection import Bus
from agenttasks.bus.consumers import BusUnavailable
from agenttasks.domain.deletion import TaskDeletion
from agenttasks.domain.task import Task
from agenttasks.domain.template import Template
from agenttasks.projections.runner import ProjectionRunner

log = logging.getLogger(__name__)

HEALTH_DDL = """
CREATE TABLE IF NOT EXISTS projection_health (
    name text PRIMARY KEY,
    checked_at timestamptz NOT NULL DEFAULT now(),
    position bigint NOT NULL,
    stored bigint NOT NULL,
    pending bigint NOT NULL,
    stalled boolean NOT NULL,
    counted_at timestamptz,
    row_count bigint,
    expected_rows bigint,
    problem text
)
"""
# Per read model: the table with one row per aggregate, and the events that create one. A
# deleted task's statistics row stays (its deletion record counts it, deletion.py).
COUNTED: dict[str, tuple[str, tuple[str, ...]]] = {
    "tasks": ("tasks", (get_topic(Task.Created),)),
    "statistics": ("task_statistics", (get_topic(Task.Created), get_topic(TaskDeletion.Created))),
    "metrics": ("metric_tasks", (get_topic(Task.Created),)),
    "templates": ("templates", (get_topic(Template.Created),)),
}


@dataclass
class Health:
    """One projection's state at a check."""

    name: str
    position: int
    stored: int  # the store's newest position
    pending: int  # messages in the stream beyond the tracked sequence
    stalled: bool
    row_count: int | None = None
    expected_rows: int | None = None
    problem: str | None = None


class SelfCheck:
    """Checks the runners of one projector every `every` seconds, counts every `count_every`."""

    def __init__(
        self,
        runners: list[ProjectionRunner],
        bus: Bus,
        database_url: str,
        events_table: str,
        *,
        every: float,
        count_every: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runners = runners
        self.bus = bus
        self.database_url = database_url
        self.events_table = events_table
        self.every = every
        self.count_every = count_every
        self._clock = clock
        self._seen: dict[str, int | None] = {}
        self._counted_at: float | None = None
        self._table_ready = False

    async def run(self, stop: asyncio.Event) -> None:
        """Checks until `stop` is set; a failing check is logged and tried again later."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.every)
                return
            except TimeoutError:
                pass
            try:
                await self.check()
            except (psycopg.Error, OSError, TimeoutError, BusUnavailable) as error:
                log.warning("read model self-check failed: %s", error)

    async def check(self) -> list[Health]:
        """One check of every runner (with row counts when they are due); records the result."""
        _, last_sequence = await self.bus.stream_bounds()
        now = self._clock()
        count = self._counted_at is None or now - self._counted_at >= self.count_every
        results = await asyncio.to_thread(self._check, last_sequence, count)
        if count:
            self._counted_at = now
        for health in results:
            if health.problem:
                log.warning("read model %s: %s", health.name, health.problem)
        return results

    def _check(self, last_sequence: int, count: bool) -> list[Health]:
        events = sql.Identifier(self.events_table)
        # Autocommit: each read is its own snapshot, the counts' transaction a real one.
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            if not self._table_ready:
                connection.execute(HEALTH_DDL)
                self._table_ready = True
            stored = _scalar(
                connection, sql.SQL("SELECT max(notification_id) FROM {}").format(events)
            )
            results = []
            for runner in self.runners:
                name = runner.projection.name
                sequence = runner.sequence or 0
                pending = max(0, last_sequence - sequence)
                moved = self._seen.get(name, -1) != runner.sequence
                self._seen[name] = runner.sequence
                health = Health(name, runner.position, stored, pending, pending > 0 and not moved)
                if health.stalled:
                    health.problem = (
                        f"stalled: {pending} published events not applied and none applied"
                        f" since the last check (position {runner.position}, store {stored})"
                    )
                    if runner.missing:
                        health.problem += (
                            f"; the stream lacks sequences {runner.missing[0]}..{runner.missing[1]}"
                        )
                if count and name in COUNTED:
                    self._count(connection, health)
                results.append(health)
            with connection.transaction(), connection.cursor() as cursor:
                for health in results:
                    _record(cursor, health, counted=count and health.name in COUNTED)
        return results

    def _count(self, connection: psycopg.Connection[Any], health: Health) -> None:
        """Rows vs. creating events at the tracked position, in one snapshot."""
        table, topics = COUNTED[health.name]
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        try:
            with connection.transaction(), connection.cursor() as cursor:
                cursor.execute(
                    "SELECT position FROM projection_tracking WHERE name = %s", (health.name,)
                )
                row = cursor.fetchone()
                position = int(row[0]) if row else 0
                cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
                rows = int(cursor.fetchone()[0])  # type: ignore[index]
                cursor.execute(
                    sql.SQL(
                        "SELECT count(*) FROM {} WHERE topic = ANY(%s) AND notification_id <= %s"
                    ).format(sql.Identifier(self.events_table)),
                    (list(topics), position),
                )
                expected = int(cursor.fetchone()[0])  # type: ignore[index]
        finally:
            connection.isolation_level = None
        health.row_count, health.expected_rows = rows, expected
        if rows != expected:
            problem = (
                f"{table} holds {rows} rows but the store has {expected} creating events up to"
                f" position {position}: events were lost; run `agenttasks replay {health.name}`"
            )
            health.problem = f"{health.problem}; {problem}" if health.problem else problem


def _scalar(connection: psycopg.Connection[Any], query: sql.Composed) -> int:
    row = connection.execute(query).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _record(cursor: psycopg.Cursor[Any], health: Health, *, counted: bool) -> None:
    # A check without counts keeps the last counts (and a count problem) it did not redo.
    cursor.execute(
        "INSERT INTO projection_health AS h (name, checked_at, position, stored, pending,"
        " stalled, counted_at, row_count, expected_rows, problem)"
        " VALUES (%(name)s, now(), %(position)s, %(stored)s, %(pending)s, %(stalled)s,"
        " CASE WHEN %(counted)s THEN now() END, %(rows)s, %(expected)s, %(problem)s)"
        " ON CONFLICT (name) DO UPDATE SET checked_at = now(), position = EXCLUDED.position,"
        " stored = EXCLUDED.stored, pending = EXCLUDED.pending, stalled = EXCLUDED.stalled,"
        " counted_at = CASE WHEN %(counted)s THEN now() ELSE h.counted_at END,"
        " row_count = CASE WHEN %(counted)s THEN EXCLUDED.row_count ELSE h.row_count END,"
        " expected_rows = CASE WHEN %(counted)s THEN EXCLUDED.expected_rows"
        " ELSE h.expected_rows END,"
        " problem = CASE WHEN %(counted)s OR h.row_count IS NOT DISTINCT FROM h.expected_rows"
        " THEN EXCLUDED.problem ELSE h.problem END",
        {
            "name": health.name,
            "position": health.position,
            "stored": health.stored,
            "pending": health.pending,
            "stalled": health.stalled,
            "counted": counted,
            "rows": health.row_count,
            "expected": health.expected_rows,
            "problem": health.problem,
        },
    )


HEALTH_SQL = (
    "SELECT name, stalled, pending, row_count, expected_rows, problem,"
    " extract(epoch FROM now() - checked_at) FROM projection_health ORDER BY name"
)


def summarise(rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """The /ready entry from projection_health rows: not ok while any has a problem."""
    result: dict[str, Any] = {"ok": True}
    for name, stalled, pending, row_count, expected, problem, age in rows:
        result[str(name)] = {
            "stalled": bool(stalled),
            "pending": int(pending),
            "rows": row_count,
            "expected_rows": expected,
            "checked_seconds_ago": round(float(age), 1),
            "problem": problem,
        }
        if problem:
            result["ok"] = False
    return result
