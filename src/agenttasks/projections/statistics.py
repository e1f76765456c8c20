"""The statistics read model: one row per task with what the figures need, and nothing else.

`task_statistics` holds each task's owner, type, priority, status, creation time, the start and
end of its current attempt, and the tokens its completion recorded. Totals, success rate, tasks
per day and exact percentiles of duration are computed from these rows at query time
(statistics_queries.py), so every figure is exact and an event changes one row.

Every handler only assigns values, so the effect of a task's events composes into one set of
assignments: a batch (a replay, a big live batch) is folded per task in memory and written as
one INSERT or UPDATE per task, with the same result as applying the events one by one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from psycopg import Cursor, sql

from agenttasks.bus.event_data import TaskCompleted, data_of
from agenttasks.bus.messages import BusEvent, TaskEvent
from agenttasks.projections.base import Projection, Tables

DDL = {
    "task_statistics": [
        """CREATE TABLE IF NOT EXISTS {t} (
            task_id uuid PRIMARY KEY,
            created_by text NOT NULL,
            task_type text NOT NULL,
            priority text NOT NULL,
            status text NOT NULL,
            created_at timestamptz NOT NULL,
            started_at timestamptz,
            finished_at timestamptz,
            prompt_tokens bigint,
            completion_tokens bigint,
            last_position bigint NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS {t_user} ON {t} (created_by, created_at)",
        "CREATE INDEX IF NOT EXISTS {t_created} ON {t} (created_at)",
    ],
}
ROW = (
    "created_by", "task_type", "priority", "status", "created_at", "started_at", "finished_at",
    "prompt_tokens", "completion_tokens",
)  # fmt: skip
Assignments = dict[str, Any]


def _created(e: TaskEvent) -> Assignments:
    return {
        "created_by": e.user,
        "task_type": e.task_type,
        "priority": e.priority,
        "status": "pending",
        "created_at": e.timestamp,
        "started_at": None,
        "finished_at": None,
        "prompt_tokens": None,
        "completion_tokens": None,
    }


def _completed(e: TaskEvent) -> Assignments:
    prompt, completion = tokens_of(data_of(e, TaskCompleted).result_data)
    return {
        "status": "completed",
        "finished_at": e.timestamp,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
    }


def tokens_of(result_data: Any) -> tuple[int | None, int | None]:
    """(prompt, completion) tokens from `result_data.usage`, None where not recorded."""
    usage = result_data.get("usage") if isinstance(result_data, dict) else None
    if not isinstance(usage, dict):
        return None, None

    def count(key: str) -> int | None:
        value = usage.get(key)
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**62
        return value if ok else None

    return count("prompt_tokens"), count("completion_tokens")


ASSIGNMENTS: dict[str, Callable[[TaskEvent], Assignments]] = {
    "created": _created,
    "started": lambda e: {"status": "running", "started_at": e.timestamp, "finished_at": None},
    "completed": _completed,
    "failed": lambda e: {"status": "failed", "finished_at": e.timestamp},
    "cancelled": lambda e: {"status": "cancelled", "finished_at": e.timestamp},
    "retried": lambda e: {"status": "pending", "started_at": None, "finished_at": None},
}


TYPES = {
    "task_id": "uuid", "created_by": "text", "task_type": "text", "priority": "text",
    "status": "text", "created_at": "timestamptz", "started_at": "timestamptz",
    "finished_at": "timestamptz", "prompt_tokens": "bigint", "completion_tokens": "bigint",
    "last_position": "bigint", "first_position": "bigint",
}  # fmt: skip
CHUNK = 1000  # rows per statement: one statement of a megabyte or more stalls pipeline mode
_encoder = msgspec.json.Encoder()


def _rows_of(columns: tuple[str, ...]) -> sql.Composed:
    """`json_to_recordset(%s::json) AS v(...)`: many rows in one parameter.

    One JSON text (encoded in C by msgspec, parsed in C by Postgres) costs far less than
    binding a parameter per value or per column array.
    """
    fields = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(TYPES[c])) for c in columns
    )
    return sql.SQL("json_to_recordset(%s::json) AS v({})").format(fields)


def _write(cursor: Cursor[Any], query: sql.Composed, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK):
        cursor.execute(query, (_encoder.encode(rows[start : start + CHUNK]).decode(),))


def _insert(cursor: Cursor[Any], t: Tables, rows: list[dict[str, Any]]) -> None:
    columns = ("task_id", *ROW, "last_position")
    names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    query = sql.SQL(
        "INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT (task_id) DO NOTHING"
    ).format(t.id("task_statistics"), names, names, _rows_of(columns))
    _write(cursor, query, rows)


def _update(
    cursor: Cursor[Any], t: Tables, columns: tuple[str, ...], rows: list[dict[str, Any]]
) -> None:
    assignments = sql.SQL(", ").join(
        sql.SQL("{0} = v.{0}").format(sql.Identifier(c)) for c in (*columns, "last_position")
    )
    # The row must be older than the first event folded in: all of them apply, or none.
    query = sql.SQL(
        "UPDATE {} AS t SET {} FROM {}"
        " WHERE t.task_id = v.task_id AND t.last_position < v.first_position"
    ).format(
        t.id("task_statistics"),
        assignments,
        _rows_of(("task_id", *columns, "last_position", "first_position")),
    )
    _write(cursor, query, rows)


def apply_events(cursor: Cursor[Any], t: Tables, events: list[BusEvent]) -> None:
    """Folds each task's events of the batch into one row write; same tables as one by one."""
    created: dict[str, tuple[Assignments, int]] = {}
    changed: dict[str, tuple[Assignments, int, int]] = {}  # assignments, first, last position
    for e in events:
        if not isinstance(e, TaskEvent) or (assign := ASSIGNMENTS.get(e.type)) is None:
            continue
        values = assign(e)
        if e.type == "created":
            created[e.task_id] = (values, e.position)
        elif e.task_id in created:
            row, _ = created[e.task_id]
            created[e.task_id] = ({**row, **values}, e.position)
        elif e.task_id in changed:
            row, first, _ = changed[e.task_id]
            changed[e.task_id] = ({**row, **values}, first, e.position)
        else:
            changed[e.task_id] = (values, e.position, e.position)
    if created:
        _insert(
            cursor,
            t,
            [{"task_id": k, **row, "last_position": last} for k, (row, last) in created.items()],
        )
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for task_id, (row, first, last) in changed.items():
        by_columns.setdefault(tuple(row), []).append(
            {"task_id": task_id, **row, "last_position": last, "first_position": first}
        )
    for columns, rows in by_columns.items():
        _update(cursor, t, columns, rows)


def _one(cursor: Cursor[Any], t: Tables, e: TaskEvent) -> None:
    apply_events(cursor, t, [e])


def statistics_projection() -> Projection:
    """The `task_statistics` read model."""
    return Projection(
        name="statistics",
        ddl=DDL,
        task_handlers=dict.fromkeys(ASSIGNMENTS, _one),
        batch_handler=apply_events,
    )
