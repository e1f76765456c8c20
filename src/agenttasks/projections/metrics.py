"""The metrics read model: task counters, the status gauge and histogram buckets, in Postgres.

Prometheus counters kept in one process's memory would differ between API replicas and vanish
on restart; these are folded from the events by the projector, so every replica exports the
same figures and a replay rebuilds them. Two tables:

- `task_metrics`: one row per (metric, task type, label) with an integer value: counts of
  created/completed/failed (by error kind)/cancelled/retried tasks, tasks per status, histogram
  buckets (not cumulative) and sums in microseconds, tokens. Labels are closed sets: anything
  else is stored as "other", so the table stays a few hundred rows whatever users send.
- `metric_tasks`: one row per task with what the next event needs (status, since when it waits,
  when its attempt started) and its `contribution` to `task_metrics`, so a deletion's
  PurgedEvent can take the task's figures out again (`forget_tasks`) and `replay --verify`
  stays clean.

Counts are integers (sums in microseconds): a batch and the same events one by one give the
same rows exactly, which float sums would not. A row whose value comes back to 0 is deleted, so
that holds for rows too. `task_metrics_purged` (not a read model, never rebuilt) keeps the
counter parts of purged tasks, so the exported totals never go down.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any
from uuid import UUID

import msgspec
from psycopg import Connection, Cursor, sql

from agenttasks.bus.messages import BusEvent, PurgedEvent, TaskEvent
from agenttasks.projections.base import BatchHandler, Projection, Tables
from agenttasks.projections.metrics_fold import COUNTERS, KINDS, Fold, State

DDL = {
    "metric_tasks": [
        """CREATE TABLE IF NOT EXISTS {t} (
            task_id uuid PRIMARY KEY,
            task_type text NOT NULL,
            status text NOT NULL,
            pending_since timestamptz,
            started_at timestamptz,
            contribution jsonb NOT NULL,
            last_position bigint NOT NULL
        )""",
    ],
    "task_metrics": [
        """CREATE TABLE IF NOT EXISTS {t} (
            key text PRIMARY KEY,
            metric text NOT NULL,
            task_type text NOT NULL,
            label text NOT NULL,
            value bigint NOT NULL
        )""",
        # Not a read model: written by forget_tasks only, never rebuilt (see the module doc).
        """CREATE TABLE IF NOT EXISTS task_metrics_purged (
            key text PRIMARY KEY,
            metric text NOT NULL,
            task_type text NOT NULL,
            label text NOT NULL,
            value bigint NOT NULL
        )""",
        # Not a read model either: the tasks whose counts are in task_metrics_purged.
        """CREATE TABLE IF NOT EXISTS task_metrics_forgotten (
            task_id uuid PRIMARY KEY,
            forgotten_at timestamptz NOT NULL DEFAULT now()
        )""",
    ],
}
_encoder = msgspec.json.Encoder()
CHUNK = 1000


# Queries are composed once per physical table and kept as text (composing them per batch
# was a large part of a small batch's cost).
@lru_cache(maxsize=64)
def _load_query(table: str) -> str:
    return (
        sql.SQL(
            "SELECT task_id::text, task_type, status, pending_since, started_at, contribution,"
            " last_position FROM {} WHERE task_id = ANY(%s::uuid[])"
        )
        .format(sql.Identifier(table))
        .as_string(None)
    )


@lru_cache(maxsize=64)
def _upsert_query(table: str) -> str:
    columns = sql.SQL(
        "task_id, task_type, status, pending_since, started_at, contribution, last_position"
    )
    return (
        sql.SQL(
            "INSERT INTO {} ({}) SELECT {} FROM json_to_recordset(%s::json) AS v(task_id uuid,"
            " task_type text, status text, pending_since timestamptz, started_at timestamptz,"
            " contribution jsonb, last_position bigint)"
            " ON CONFLICT (task_id) DO UPDATE SET task_type = EXCLUDED.task_type,"
            " status = EXCLUDED.status, pending_since = EXCLUDED.pending_since,"
            " started_at = EXCLUDED.started_at, contribution = EXCLUDED.contribution,"
            " last_position = EXCLUDED.last_position"
        )
        .format(sql.Identifier(table), columns, columns)
        .as_string(None)
    )


@lru_cache(maxsize=64)
def _fold_query(states: str, table: str) -> str:
    # One statement for a batch's fold (it was three: the states' upsert, the deltas' upsert
    # and the DELETE of rows back at 0; psycopg's cost per statement was most of a small
    # batch's). MERGE deletes a row its negative delta brings to 0, as that DELETE did. MERGE
    # does not wait out a concurrent insert of the same key as ON CONFLICT does: only the
    # holder of the metrics tracking row writes these tables (a replay writes fresh ones).
    upsert = _upsert_query(states).replace("%s", "%(rows)s")
    return (
        sql.SQL(
            "WITH w AS ({}) MERGE INTO {} AS t USING json_to_recordset(%(deltas)s::json)"
            " AS d(key text, m text, tt text, l text, v bigint) ON t.key = d.key"
            " WHEN MATCHED AND d.v < 0 AND t.value + d.v = 0 THEN DELETE"
            " WHEN MATCHED THEN UPDATE SET value = t.value + d.v"
            " WHEN NOT MATCHED THEN INSERT (key, metric, task_type, label, value)"
            " VALUES (d.key, d.m, d.tt, d.l, d.v)"
        )
        .format(sql.SQL(upsert), sql.Identifier(table))
        .as_string(None)
    )


@lru_cache(maxsize=64)
def _add_queries(table: str) -> tuple[str, str]:
    name = sql.Identifier(table)
    add = sql.SQL(
        "INSERT INTO {0} (key, metric, task_type, label, value)"
        " SELECT key, m, tt, l, v FROM json_to_recordset(%s::json)"
        " AS d(key text, m text, tt text, l text, v bigint)"
        " ON CONFLICT (key) DO UPDATE SET value = {0}.value + EXCLUDED.value"
    ).format(name)
    drop = sql.SQL("DELETE FROM {} WHERE key = ANY(%s) AND value = 0").format(name)
    return add.as_string(None), drop.as_string(None)


def _load(cursor: Cursor[Any], t: Tables, task_ids: Iterable[str]) -> dict[str, State]:
    _send_load(cursor, t, task_ids)
    return _loaded(cursor)


def _send_load(cursor: Cursor[Any], t: Tables, task_ids: Iterable[str]) -> None:
    # The ids as one array literal (uuid text has no commas or braces): psycopg's dumping of
    # a list parameter costs more than the whole read on a small batch.
    cursor.execute(_load_query(t["metric_tasks"]), ("{" + ",".join(task_ids) + "}",))


def _loaded(cursor: Cursor[Any]) -> dict[str, State]:
    return {row[0]: State(*row[1:]) for row in cursor.fetchall()}


def _relevant(events: list[BusEvent]) -> list[TaskEvent]:
    return [e for e in events if isinstance(e, TaskEvent) and e.type in KINDS]


def preload(connection: Connection[Any], t: Tables, events: list[BusEvent]) -> BatchHandler:
    """Sends the read of the batch's tasks' rows now; the handler returned folds with it.

    The live runner sends it in the tracking lock's round trip. Used once, and only when it
    covers the events given (the same rows as `apply_events` would read then: nothing else
    writes them between); otherwise the handler reads again. Not with a deletion in the
    batch: its purge handler runs before a later run of events and changes their rows.
    """
    asked = {e.task_id for e in _relevant(events)}
    if not asked or any(isinstance(e, PurgedEvent) for e in events):
        return apply_events
    cursor = connection.cursor()
    _send_load(cursor, t, asked)
    unused = [True]

    def handler(writer: Cursor[Any], tables: Tables, batch: list[BusEvent]) -> None:
        relevant = _relevant(batch)
        if unused and tables == t and {e.task_id for e in relevant} <= asked:
            unused.clear()
            _fold(writer, tables, relevant, _loaded(cursor))
        else:
            apply_events(writer, tables, batch)

    return handler


def apply_events(cursor: Cursor[Any], t: Tables, events: list[BusEvent]) -> None:
    """Folds the batch into one read of its tasks' rows and one write; same as one by one."""
    relevant = _relevant(events)
    if not relevant:
        return
    _fold(cursor, t, relevant, _load(cursor, t, {e.task_id for e in relevant}))


def _fold(
    cursor: Cursor[Any], t: Tables, relevant: list[TaskEvent], loaded: dict[str, State]
) -> None:
    if not relevant:
        return
    fold = Fold(loaded)
    for e in relevant:
        fold.apply(e)
    rows = [
        {
            "task_id": task_id,
            "task_type": s.type,
            "status": s.status,
            "pending_since": s.pending_since,
            "started_at": s.started_at,
            "contribution": s.contribution,
            "last_position": s.last_position,
        }
        for task_id in sorted(fold.touched)
        for s in [fold.states[task_id]]
    ]
    deltas = _delta_rows(fold.deltas)
    if deltas and len(rows) <= CHUNK:
        cursor.execute(
            _fold_query(t["metric_tasks"], t["task_metrics"]),
            {"rows": _encoder.encode(rows).decode(), "deltas": _encoder.encode(deltas).decode()},
        )
        return
    upsert = _upsert_query(t["metric_tasks"])
    for start in range(0, len(rows), CHUNK):
        cursor.execute(upsert, (_encoder.encode(rows[start : start + CHUNK]).decode(),))
    add_to(cursor, t["task_metrics"], fold.deltas)


def _delta_rows(deltas: dict[str, int]) -> list[dict[str, Any]]:
    """The rows of `task_metrics` deltas, key order; a delta of 0 changes no row and is left out."""
    rows = []
    for key in sorted(key for key, delta in deltas.items() if delta):
        metric, task_type, label = key.split("|", 2)
        rows.append({"key": key, "m": metric, "tt": task_type, "l": label, "v": deltas[key]})
    return rows


def add_to(cursor: Cursor[Any], table: str, deltas: dict[str, int]) -> None:
    """Adds each delta to its row of `table` (a metrics table), deleting rows that reach 0."""
    # A delta of 0 changes no row (and would only insert a 0 row for the DELETE to remove).
    rows = _delta_rows(deltas)
    if not rows:
        return
    add, drop = _add_queries(table)
    cursor.execute(add, (_encoder.encode(rows).decode(),))
    # A stored value is a sum of the tasks' contributions, each above 0 (a status +1 is taken
    # back only after it was added): only a negative delta can bring a row to 0.
    lowered = [row["key"] for row in rows if row["v"] < 0]
    if lowered:
        cursor.execute(drop, (lowered,))


def forget_tasks(cursor: Cursor[Any], t: Tables, task_ids: Iterable[str | UUID]) -> int:
    """Takes deleted tasks out of the metrics tables `t`; their counts go to the purged table.

    The purge handler of the read model (a deletion's PurgedEvent, after every event of its
    task): the tables then equal a replay of what the store still holds, and the exported
    totals keep counting the purged tasks. A task's counts join `task_metrics_purged` once
    (`task_metrics_forgotten` remembers it), whether the live tables or a replay's rebuild
    forgets it first. Returns how many of the tasks had a row.
    """
    cursor.execute(
        sql.SQL(
            "DELETE FROM {} WHERE task_id = ANY(%s::uuid[]) RETURNING task_id::text, contribution"
        ).format(t.id("metric_tasks")),
        ([str(task_id) for task_id in task_ids],),
    )
    found = cursor.fetchall()
    if not found:
        return 0
    cursor.execute(
        "INSERT INTO task_metrics_forgotten (task_id) SELECT unnest(%s::uuid[])"
        " ON CONFLICT DO NOTHING RETURNING task_id::text",
        ([task_id for task_id, _ in found],),
    )
    first_time = {row[0] for row in cursor.fetchall()}
    removed: dict[str, int] = {}
    kept: dict[str, int] = {}
    for task_id, contribution in found:
        for key, value in contribution.items():
            removed[key] = removed.get(key, 0) - value
            if task_id in first_time and key.split("|", 1)[0] in COUNTERS:
                kept[key] = kept.get(key, 0) + value
    add_to(cursor, t["task_metrics"], removed)
    add_to(cursor, "task_metrics_purged", kept)
    return len(found)


def _purged(cursor: Cursor[Any], t: Tables, e: PurgedEvent) -> None:
    forget_tasks(cursor, t, [e.task_id])


def _one(cursor: Cursor[Any], t: Tables, e: TaskEvent) -> None:
    apply_events(cursor, t, [e])


def metrics_projection() -> Projection:
    """The `metrics` read model."""
    return Projection(
        name="metrics",
        ddl=DDL,
        task_handlers=dict.fromkeys(KINDS, _one),
        batch_handler=apply_events,
        purge_handler=_purged,
        preload=preload,
    )
