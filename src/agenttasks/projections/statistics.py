"""The statistics read model: one row per task with what the figures need, and nothing else.

`task_statistics` holds each task's owner, type, priority, status, creation time, the start and
end of its current attempt, and the tokens its completion recorded. Totals, success rate, tasks
per day and exact percentiles of duration are computed from these rows at query time
(statistics_queries.py), so every figure is exact and an event changes one row.

Every handler only assigns values, so the effect of a task's events composes into one set of
assignments: a batch (a replay, a big live batch) is folded per task in memory and written as
one INSERT or UPDATE per task (the batch's INSERTs in one statement, its UPDATEs in another:
row_updates.py), with the same result as applying the events one by one.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache
from typing import Any

import msgspec
from psycopg import Cursor, sql

from agenttasks.bus.event_data import TaskCompleted, TaskCreated, TaskModelCalled, data_of
from agenttasks.bus.messages import BusEvent, PurgedEvent, TaskEvent
from agenttasks.projections.base import Projection, Tables
from agenttasks.projections.row_updates import Shape, send_updates

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
        # Added with cost (docs/cost.md): the template, and the sums of the task's model calls
        # over every attempt (cost_usd: the priced ones; unpriced_calls: the others).
        "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS template_id uuid",
        "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS cost_usd numeric NOT NULL DEFAULT 0",
        "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS model_calls integer NOT NULL DEFAULT 0",
        "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS unpriced_calls integer NOT NULL DEFAULT 0",
        "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS call_prompt_tokens bigint NOT NULL DEFAULT 0",
        "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS call_completion_tokens bigint NOT NULL DEFAULT 0",
        "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS cached_tokens bigint NOT NULL DEFAULT 0",
        "CREATE INDEX IF NOT EXISTS {t_user} ON {t} (created_by, created_at)",
        "CREATE INDEX IF NOT EXISTS {t_created} ON {t} (created_at)",
    ],
}
ROW = (
    "created_by", "task_type", "priority", "status", "created_at", "started_at", "finished_at",
    "prompt_tokens", "completion_tokens", "template_id",
)  # fmt: skip
# Columns that model_call events add to rather than set (a batch folds them into one sum).
SUMS = (
    "cost_usd", "model_calls", "unpriced_calls", "call_prompt_tokens", "call_completion_tokens",
    "cached_tokens",
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
        "template_id": data_of(e, TaskCreated).template_id,
    }


def _call_sums(e: TaskEvent) -> dict[str, Any]:
    d = data_of(e, TaskModelCalled)
    return {
        "cost_usd": Decimal(d.cost_usd) if d.cost_usd is not None else Decimal(0),
        "model_calls": 1,
        "unpriced_calls": 1 if d.cost_usd is None else 0,
        "call_prompt_tokens": d.prompt_tokens,
        "call_completion_tokens": d.completion_tokens,
        "cached_tokens": d.cached_tokens,
    }


call_sums = _call_sums  # the deletion record sums a task's calls the same way (deletion.py)


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
    "last_position": "bigint", "first_position": "bigint", "template_id": "uuid",
    "cost_usd": "numeric", "model_calls": "integer", "unpriced_calls": "integer",
    "call_prompt_tokens": "bigint", "call_completion_tokens": "bigint", "cached_tokens": "bigint",
}  # fmt: skip
CHUNK = 1000  # rows per statement: one statement of a megabyte or more stalls pipeline mode
_encoder = msgspec.json.Encoder()
# The UPDATE of a task's row: the columns its events may set, the sums its calls add to.
SHAPE = Shape(
    table_key="task_id", types=tuple(TYPES.items()), settable=ROW, sums=SUMS,
    always=("last_position",),
)  # fmt: skip


def _rows_of(columns: tuple[str, ...]) -> sql.Composed:
    """`json_to_recordset(%s::json) AS v(...)`: many rows in one parameter.

    One JSON text (encoded in C by msgspec, parsed in C by Postgres) costs far less than
    binding a parameter per value or per column array.
    """
    fields = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(TYPES[c.lstrip("+")])) for c in columns
    )
    return sql.SQL("json_to_recordset(%s::json) AS v({})").format(fields)


def _write(cursor: Cursor[Any], query: str, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK):
        cursor.execute(query, (_encoder.encode(rows[start : start + CHUNK]).decode(),))


# Queries are composed once per physical table (and column set) and kept as text: composing
# them per batch was a tenth of the live projector's time at a few events per batch.
@lru_cache(maxsize=64)
def _insert_query(table: str) -> str:
    columns = ("task_id", *ROW, *SUMS, "last_position")
    names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    return (
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT (task_id) DO NOTHING")
        .format(sql.Identifier(table), names, names, _rows_of(columns))
        .as_string(None)
    )


def _insert(cursor: Cursor[Any], t: Tables, rows: list[dict[str, Any]]) -> None:
    _write(cursor, _insert_query(t["task_statistics"]), rows)


def purged_row(e: PurgedEvent) -> Assignments:
    """The row a deleted task keeps: the figures its purge event carries."""
    return {
        "created_by": e.user,
        "task_type": e.task_type,
        "priority": e.priority,
        "status": e.status,
        "created_at": e.created_at,
        "started_at": e.started_at,
        "finished_at": e.finished_at,
        "prompt_tokens": e.prompt_tokens,
        "completion_tokens": e.completion_tokens,
        "template_id": e.template_id,
        "cost_usd": Decimal(e.cost_usd) if e.cost_usd is not None else Decimal(0),
        "model_calls": e.model_calls,
        "unpriced_calls": e.unpriced_calls,
        "call_prompt_tokens": e.call_prompt_tokens,
        "call_completion_tokens": e.call_completion_tokens,
        "cached_tokens": e.cached_tokens,
    }


def _purged(cursor: Cursor[Any], t: Tables, e: PurgedEvent) -> None:
    # A deleted task still counts: its row is set to the figures the purge event carries,
    # which are the ones its events gave it. Live the row is there already (same values); a
    # replay after the purge, without the task's events, writes it from the purge alone.
    columns = ("task_id", *ROW, *SUMS, "last_position")
    names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    updates = sql.SQL(", ").join(
        sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in columns[1:]
    )
    query = sql.SQL(
        "INSERT INTO {t} AS s ({names}) SELECT {names} FROM {rows}"
        " ON CONFLICT (task_id) DO UPDATE SET {updates}"
        " WHERE s.last_position < excluded.last_position"
    ).format(t=t.id("task_statistics"), names=names, rows=_rows_of(columns), updates=updates)
    _write(
        cursor,
        query.as_string(None),
        [{"task_id": e.task_id, **purged_row(e), "last_position": e.position}],
    )


def apply_events(cursor: Cursor[Any], t: Tables, events: list[BusEvent]) -> None:
    """Folds each task's events of the batch into one row write; same tables as one by one.

    A PurgedEvent never comes here: Projection.apply_many hands it to `_purged`, in order.
    """
    created: dict[str, tuple[Assignments, int]] = {}
    changed: dict[str, tuple[Assignments, int, int]] = {}  # assignments, first, last position
    sums: dict[str, dict[str, Any]] = {}  # task -> what its model calls of the batch add
    for e in events:
        if not isinstance(e, TaskEvent):
            continue
        if e.type == "model_call":
            values: Assignments = {}
            added = sums.setdefault(e.task_id, dict.fromkeys(SUMS, 0))
            for column, value in _call_sums(e).items():
                added[column] += value
        elif (assign := ASSIGNMENTS.get(e.type)) is not None:
            values = assign(e)
        else:
            continue
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
            [
                {"task_id": k, **row, **sums.get(k, dict.fromkeys(SUMS, 0)), "last_position": last}
                for k, (row, last) in created.items()
            ],
        )
    updates = []
    for task_id, (row, first, last) in changed.items():
        added = {f"+{c}": v for c, v in sums[task_id].items()} if task_id in sums else {}
        updates.append(
            {"task_id": task_id, **row, **added, "last_position": last, "first_position": first}
        )
    # Every other task's row in one statement, whichever columns its events set.
    send_updates(cursor, t["task_statistics"], SHAPE, updates)


def _one(cursor: Cursor[Any], t: Tables, e: TaskEvent) -> None:
    apply_events(cursor, t, [e])


def statistics_projection() -> Projection:
    """The `task_statistics` read model."""
    return Projection(
        name="statistics",
        ddl=DDL,
        task_handlers=dict.fromkeys((*ASSIGNMENTS, "model_call"), _one),
        batch_handler=apply_events,
        purge_handler=_purged,
    )
