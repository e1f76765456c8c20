"""The `tasks` row's fold: each task's events of a batch become one row write.

Every event assigns columns of its task's row (a model call also adds to the cost and token
sums), so a task's events compose into one set of assignments plus sums: a task created in the
batch is one INSERT of its folded row; another is one UPDATE, applied only when the row is
older than the first event folded in (all of the task's events of the batch apply, or none,
as the runner's tracking already guarantees). Rows go many to a statement, as JSON (encoded by
msgspec, parsed by Postgres, both in C): the created rows in one, all others in another
(row_updates.py).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Context, Decimal
from functools import lru_cache
from typing import Any

import msgspec
from psycopg import Cursor, sql

from agenttasks.bus.event_data import (
    TaskCompleted,
    TaskCreated,
    TaskFailed,
    TaskModelCalled,
    TaskRetried,
    TaskStarted,
    data_of,
)
from agenttasks.bus.messages import TaskEvent
from agenttasks.projections.row_updates import Shape, send_updates

PRIORITY_RANK = {"low": 0, "normal": 1, "high": 2, "urgent": 3}
Assignments = dict[str, Any]

TYPES = {
    "id": "uuid", "title": "text", "task_type": "text", "task_config": "jsonb",
    "priority": "text", "priority_rank": "smallint", "status": "text", "progress": "smallint",
    "result_data": "jsonb", "error_message": "text", "error_kind": "text",
    "created_by": "text", "template_id": "uuid", "template_version": "integer",
    "attempt": "integer", "max_retries": "integer", "timeout_seconds": "integer",
    "worker_id": "text", "usage": "jsonb", "created_at": "timestamptz",
    "started_at": "timestamptz", "completed_at": "timestamptz", "updated_at": "timestamptz",
    "version": "integer", "last_position": "bigint", "first_position": "bigint",
    "webhook_url": "text", "cost_usd": "numeric", "model_calls": "integer",
    "unpriced_calls": "integer", "prompt_tokens": "bigint", "completion_tokens": "bigint",
    "cached_tokens": "bigint",
}  # fmt: skip
# Columns a model call adds to rather than sets.
SUMS = (
    "cost_usd", "model_calls", "unpriced_calls", "prompt_tokens", "completion_tokens",
    "cached_tokens",
)  # fmt: skip
# Postgres adds numerics exactly: so must the fold (Decimal's default context rounds at 28).
_EXACT = Context(prec=100_000, Emax=999_999, Emin=-999_999)
CHUNK = 1000  # rows per statement: one statement of a megabyte or more stalls pipeline mode
_encoder = msgspec.json.Encoder()


def _created(e: TaskEvent) -> Assignments:
    d = data_of(e, TaskCreated)
    return {
        "title": d.title, "task_type": d.task_type, "task_config": d.task_config,
        "priority": d.priority, "priority_rank": PRIORITY_RANK[d.priority], "status": "pending",
        "progress": 0, "result_data": None, "error_message": None, "error_kind": None,
        "created_by": e.user, "template_id": d.template_id,
        "template_version": d.template_version, "attempt": 1, "max_retries": d.max_retries,
        "timeout_seconds": d.timeout_seconds, "worker_id": None, "usage": None,
        "created_at": e.timestamp, "started_at": None, "completed_at": None,
        "updated_at": e.timestamp, "webhook_url": d.webhook_url,
    }  # fmt: skip


def _started(e: TaskEvent) -> Assignments:
    d = data_of(e, TaskStarted)
    return {"attempt": d.attempt, "worker_id": d.worker_id, "started_at": e.timestamp}


def _completed(e: TaskEvent) -> Assignments:
    result = data_of(e, TaskCompleted).result_data
    usage = result.get("usage")
    return {
        "result_data": result,
        "usage": usage if isinstance(usage, dict) else None,
        "completed_at": e.timestamp,
    }


def _failed(e: TaskEvent) -> Assignments:
    d = data_of(e, TaskFailed)
    return {
        "error_message": d.error_message,
        "error_kind": d.error_kind,
        "completed_at": e.timestamp,
    }


def _retried(e: TaskEvent) -> Assignments:
    return {
        "attempt": data_of(e, TaskRetried).attempt, "result_data": None, "usage": None,
        "error_message": None, "error_kind": None, "worker_id": None, "started_at": None,
        "completed_at": None,
    }  # fmt: skip


def _nothing(e: TaskEvent) -> Assignments:
    return {}


# Besides these, every kind sets status, progress and updated_at from the event.
ASSIGNMENTS: dict[str, Callable[[TaskEvent], Assignments]] = {
    "started": _started,
    "progress": _nothing,
    "result": _nothing,
    "info": _nothing,
    "completed": _completed,
    "failed": _failed,
    "cancelled": lambda e: {"completed_at": e.timestamp},
    "retried": _retried,
}
KINDS = ("created", "model_call", *ASSIGNMENTS)
# What a created event's row sets (every column but the id, version, position and sums).
COLUMNS = (
    "title", "task_type", "task_config", "priority", "priority_rank", "status", "progress",
    "result_data", "error_message", "error_kind", "created_by", "template_id",
    "template_version", "attempt", "max_retries", "timeout_seconds", "worker_id", "usage",
    "created_at", "started_at", "completed_at", "updated_at", "webhook_url",
)  # fmt: skip
# The UPDATE of a task's row: the columns its events may set, the sums its calls add to.
SHAPE = Shape(
    table_key="id",
    types=tuple(TYPES.items()),
    settable=COLUMNS,
    sums=SUMS,
    always=("version", "last_position"),
)


def _call(e: TaskEvent) -> tuple[Assignments, list[Any]]:
    # A call changes no status: only its progress, the time and the sums.
    d = data_of(e, TaskModelCalled)
    cost = Decimal(d.cost_usd) if d.cost_usd is not None else Decimal(0)
    added = [cost, 1, 1 if d.cost_usd is None else 0, d.prompt_tokens, d.completion_tokens]
    return {"progress": e.progress, "updated_at": e.timestamp}, [*added, d.cached_tokens]


class _Row:
    """One task's fold: what its events of the batch assign and add, and their positions."""

    __slots__ = ("created", "first", "last", "sums", "values", "version")

    def __init__(self, first: int, *, created: bool) -> None:
        self.created = created
        self.first = first
        self.last = first
        self.version = 0
        self.values: Assignments = {}
        self.sums: list[Any] | None = None

    def add(self, e: TaskEvent, values: Assignments, sums: list[Any] | None) -> None:
        self.values.update(values)
        self.last, self.version = e.position, e.version
        if sums is not None:
            if self.sums is None:
                self.sums = sums
            else:
                self.sums = [
                    _EXACT.add(a, b) if isinstance(a, Decimal) else a + b
                    for a, b in zip(self.sums, sums, strict=True)
                ]


def fold(events: list[TaskEvent]) -> dict[str, _Row]:
    """Each task's events of `events` folded, in the order the tasks first appear."""
    rows: dict[str, _Row] = {}
    for e in events:
        sums = None
        if e.type == "created":
            values = _created(e)
        elif e.type == "model_call":
            values, sums = _call(e)
        elif (assign := ASSIGNMENTS.get(e.type)) is not None:
            values = assign(e)
            values.update(status=e.status, progress=e.progress, updated_at=e.timestamp)
        else:
            continue
        row = rows.get(e.task_id)
        if row is None:
            row = rows[e.task_id] = _Row(e.position, created=e.type == "created")
        row.add(e, values, sums)
    return rows


def write(cursor: Cursor[Any], table: str, events: list[TaskEvent]) -> None:
    """Writes each task's folded events of the batch as one row write; same as one by one."""
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for task_id, row in fold(events).items():
        values = {"id": task_id, **row.values, "version": row.version, "last_position": row.last}
        if row.created:
            values.update(zip(SUMS, row.sums or [Decimal(0), 0, 0, 0, 0, 0], strict=True))
            inserts.append(values)
            continue
        if row.sums is not None:
            values.update(zip((f"+{c}" for c in SUMS), row.sums, strict=True))
        values["first_position"] = row.first
        updates.append(values)
    if inserts:
        send_rows(cursor, _insert_query(table), inserts)
    # Every other task's row in one statement, whichever columns its events set.
    send_updates(cursor, table, SHAPE, updates)


def send_rows(cursor: Cursor[Any], query: str, rows: list[dict[str, Any]]) -> None:
    """Runs `query` (one JSON parameter of rows) for `rows`, CHUNK rows at a time."""
    for start in range(0, len(rows), CHUNK):
        cursor.execute(query, (_encoder.encode(rows[start : start + CHUNK]).decode(),))


def _rows_of(columns: tuple[str, ...]) -> sql.Composed:
    """`json_to_recordset(%s::json) AS v(...)`: many rows in one parameter."""
    fields = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(TYPES[c.lstrip("+")])) for c in columns
    )
    return sql.SQL("json_to_recordset(%s::json) AS v({})").format(fields)


# Queries are composed once per physical table (and column set) and kept as text: composing
# them per batch was a tenth of the live projector's time at a few events per batch.
@lru_cache(maxsize=64)
def _insert_query(table: str) -> str:
    columns = ("id", *COLUMNS, "version", "last_position", *SUMS)
    names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    return (
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT (id) DO NOTHING")
        .format(sql.Identifier(table), names, names, _rows_of(columns))
        .as_string(None)
    )
