"""The task read model: `tasks` (one row per task, its current state) and `task_updates` (one row
per task event: the update history a frontend shows).

A batch applies each event to its task's row in order, and writes the batch's history rows in
one statement (each is its event's alone, keyed by position, so one by one gives the same).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import msgspec
from psycopg import Cursor, sql
from psycopg.types.json import Jsonb

from agenttasks.bus.event_data import (
    TaskCompleted,
    TaskCreated,
    TaskFailed,
    TaskModelCalled,
    TaskRetried,
    TaskStarted,
    data_of,
)
from agenttasks.bus.messages import BusEvent, PurgedEvent, TaskEvent
from agenttasks.projections.base import Projection, Tables

PRIORITY_RANK = {"low": 0, "normal": 1, "high": 2, "urgent": 3}

DDL = {
    "tasks": [
        """CREATE TABLE IF NOT EXISTS {t} (
            id uuid PRIMARY KEY,
            title text NOT NULL,
            task_type text NOT NULL,
            task_config jsonb NOT NULL,
            priority text NOT NULL,
            priority_rank smallint NOT NULL,
            status text NOT NULL,
            progress smallint NOT NULL,
            result_data jsonb,
            error_message text,
            error_kind text,
            created_by text NOT NULL,
            template_id uuid,
            template_version integer,
            attempt integer NOT NULL,
            max_retries integer NOT NULL,
            timeout_seconds integer NOT NULL,
            worker_id text,
            usage jsonb,
            created_at timestamptz NOT NULL,
            started_at timestamptz,
            completed_at timestamptz,
            updated_at timestamptz NOT NULL,
            version integer NOT NULL,
            last_position bigint NOT NULL,
            webhook_url text
        )""",
        # Added with webhooks: tables created before gain the column (old tasks have none).
        "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS webhook_url text",
        # Added with cost (docs/cost.md): what the task's model calls used, every attempt.
        # cost_usd sums the priced calls; unpriced_calls > 0 makes the task's cost unknown.
        "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS cost_usd numeric NOT NULL DEFAULT 0",
        "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS model_calls integer NOT NULL DEFAULT 0",
        "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS unpriced_calls integer NOT NULL DEFAULT 0",
        "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS prompt_tokens bigint NOT NULL DEFAULT 0",
        "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS completion_tokens bigint NOT NULL DEFAULT 0",
        "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS cached_tokens bigint NOT NULL DEFAULT 0",
        "CREATE INDEX IF NOT EXISTS {t_created_by} ON {t} (created_by, created_at DESC)",
        "CREATE INDEX IF NOT EXISTS {t_status} ON {t} (status, priority_rank DESC, created_at)",
        # Retention finds finished tasks by their end (retention.py).
        "CREATE INDEX IF NOT EXISTS {t_completed} ON {t} (completed_at)"
        " WHERE completed_at IS NOT NULL",
        # The active-tasks quota counts a user's queued and running tasks on every create
        # (application/quotas.py): without this it read every task the user ever had.
        "CREATE INDEX IF NOT EXISTS {t_active} ON {t} (created_by)"
        " WHERE status IN ('pending', 'running')",
    ],
    "task_updates": [
        """CREATE TABLE IF NOT EXISTS {t} (
            position bigint PRIMARY KEY,
            task_id uuid NOT NULL,
            version integer NOT NULL,
            kind text NOT NULL,
            update_type text NOT NULL,
            status text NOT NULL,
            progress smallint NOT NULL,
            message text NOT NULL,
            data jsonb NOT NULL,
            timestamp timestamptz NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS {t_task} ON {t} (task_id, position)",
    ],
}


# Queries are composed once per physical table (and column set) and kept as text: composing
# them per event was a tenth of the live projector's time.
@lru_cache(maxsize=256)
def _insert_task(table: str) -> str:
    return (
        sql.SQL(
            "INSERT INTO {} (id, title, task_type, task_config, priority, priority_rank, status,"
            " progress, created_by, template_id, template_version, attempt, max_retries,"
            " timeout_seconds, created_at, updated_at, version, last_position, webhook_url)"
            " VALUES (%s, %s, %s, %s, %s, %s, 'pending', 0, %s, %s, %s, 1, %s, %s, %s, %s, %s, %s,"
            " %s)"
            " ON CONFLICT (id) DO NOTHING"
        )
        .format(sql.Identifier(table))
        .as_string(None)
    )


@lru_cache(maxsize=256)
def _update_task(table: str, columns: tuple[str, ...]) -> str:
    assignments = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in columns)
    return (
        sql.SQL(
            "UPDATE {} SET {}, version = %s, last_position = %s"
            " WHERE id = %s AND last_position < %s"
        )
        .format(sql.Identifier(table), assignments)
        .as_string(None)
    )


@lru_cache(maxsize=256)
def _insert_update(table: str) -> str:
    return (
        sql.SQL(
            "INSERT INTO {} (position, task_id, version, kind, update_type, status, progress,"
            " message, data, timestamp) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (position) DO NOTHING"
        )
        .format(sql.Identifier(table))
        .as_string(None)
    )


@lru_cache(maxsize=256)
def _insert_updates(table: str) -> str:
    columns = sql.SQL(
        "position, task_id, version, kind, update_type, status, progress, message, data, timestamp"
    )
    return (
        sql.SQL(
            "INSERT INTO {} ({}) SELECT {} FROM json_to_recordset(%s::json) AS v(position bigint,"
            " task_id uuid, version integer, kind text, update_type text, status text,"
            " progress smallint, message text, data jsonb, timestamp timestamptz)"
            " ON CONFLICT (position) DO NOTHING"
        )
        .format(sql.Identifier(table), columns, columns)
        .as_string(None)
    )


_encoder = msgspec.json.Encoder()


def _created(cursor: Cursor[Any], t: Tables, e: TaskEvent) -> None:
    d = data_of(e, TaskCreated)
    cursor.execute(
        _insert_task(t["tasks"]),
        (
            e.task_id, d.title, d.task_type, Jsonb(d.task_config), d.priority,
            PRIORITY_RANK[d.priority], e.user, d.template_id, d.template_version,
            d.max_retries, d.timeout_seconds, e.timestamp, e.timestamp, e.version, e.position,
            d.webhook_url,
        ),
    )  # fmt: skip


def _changes(**columns: Any) -> Any:
    """A handler that sets `columns` (values may be callables of the event) on the task's row."""

    def handler(cursor: Cursor[Any], t: Tables, e: TaskEvent) -> None:
        values = {k: (v(e) if callable(v) else v) for k, v in columns.items()}
        values.update(status=e.status, progress=e.progress, updated_at=e.timestamp)
        cursor.execute(
            _update_task(t["tasks"], tuple(values)),
            (*values.values(), e.version, e.position, e.task_id, e.position),
        )

    return handler


@lru_cache(maxsize=64)
def _add_call(table: str) -> str:
    return (
        sql.SQL(
            "UPDATE {} SET cost_usd = cost_usd + coalesce(%s::numeric, 0),"
            " unpriced_calls = unpriced_calls + %s, model_calls = model_calls + 1,"
            " prompt_tokens = prompt_tokens + %s, completion_tokens = completion_tokens + %s,"
            " cached_tokens = cached_tokens + %s, progress = %s, updated_at = %s,"
            " version = %s, last_position = %s WHERE id = %s AND last_position < %s"
        )
        .format(sql.Identifier(table))
        .as_string(None)
    )


def _model_called(cursor: Cursor[Any], t: Tables, e: TaskEvent) -> None:
    # Sums, not assignments: the position guard keeps a redelivered call from counting twice.
    d = data_of(e, TaskModelCalled)
    cursor.execute(
        _add_call(t["tasks"]),
        (
            d.cost_usd, 1 if d.cost_usd is None else 0, d.prompt_tokens, d.completion_tokens,
            d.cached_tokens, e.progress, e.timestamp, e.version, e.position, e.task_id,
            e.position,
        ),
    )  # fmt: skip


def _usage(e: TaskEvent) -> Jsonb | None:
    usage = data_of(e, TaskCompleted).result_data.get("usage")
    return Jsonb(usage) if isinstance(usage, dict) else None


HANDLERS = {
    "created": _created,
    "started": _changes(
        attempt=lambda e: data_of(e, TaskStarted).attempt,
        worker_id=lambda e: data_of(e, TaskStarted).worker_id,
        started_at=lambda e: e.timestamp,
    ),
    "progress": _changes(),
    "result": _changes(),
    "info": _changes(),
    "model_call": _model_called,
    "completed": _changes(
        result_data=lambda e: Jsonb(data_of(e, TaskCompleted).result_data),
        usage=_usage,
        completed_at=lambda e: e.timestamp,
    ),
    "failed": _changes(
        error_message=lambda e: data_of(e, TaskFailed).error_message,
        error_kind=lambda e: data_of(e, TaskFailed).error_kind,
        completed_at=lambda e: e.timestamp,
    ),
    "cancelled": _changes(completed_at=lambda e: e.timestamp),
    "retried": _changes(
        attempt=lambda e: data_of(e, TaskRetried).attempt,
        result_data=None,
        usage=None,
        error_message=None,
        error_kind=None,
        worker_id=None,
        started_at=None,
        completed_at=None,
    ),
}


def _record_update(cursor: Cursor[Any], t: Tables, e: TaskEvent) -> None:
    cursor.execute(
        _insert_update(t["task_updates"]),
        (
            e.position, e.task_id, e.version, e.type, e.update_type, e.status, e.progress,
            e.message, Jsonb(_update_data(e)), e.timestamp,
        ),
    )  # fmt: skip


def _update_data(e: TaskEvent) -> dict[str, Any]:
    # The history shows what a frontend needs; the created event's config is on the task row.
    return {} if e.type == "created" else dict(e.data)


def _both(handler: Any) -> Any:
    def apply(cursor: Cursor[Any], t: Tables, e: TaskEvent) -> None:
        handler(cursor, t, e)
        _record_update(cursor, t, e)

    return apply


def apply_events(cursor: Cursor[Any], t: Tables, events: list[BusEvent]) -> None:
    """Applies each event to its task's row, then the batch's history rows in one statement."""
    updates: list[TaskEvent] = []
    for e in events:
        handler = HANDLERS.get(e.type) if isinstance(e, TaskEvent) else None
        if handler is None or not isinstance(e, TaskEvent):
            continue
        handler(cursor, t, e)
        updates.append(e)
    if len(updates) == 1:
        _record_update(cursor, t, updates[0])
    elif updates:
        rows = [
            {
                "position": e.position, "task_id": e.task_id, "version": e.version,
                "kind": e.type, "update_type": e.update_type, "status": e.status,
                "progress": e.progress, "message": e.message, "data": _update_data(e),
                "timestamp": e.timestamp,
            }
            for e in updates
        ]  # fmt: skip
        cursor.execute(_insert_updates(t["task_updates"]), (_encoder.encode(rows).decode(),))


def _purged(cursor: Cursor[Any], t: Tables, e: PurgedEvent) -> None:
    # The task's events all come before its purge, so nothing re-creates these rows later.
    cursor.execute(sql.SQL("DELETE FROM {} WHERE id = %s").format(t.id("tasks")), (e.task_id,))
    cursor.execute(
        sql.SQL("DELETE FROM {} WHERE task_id = %s").format(t.id("task_updates")), (e.task_id,)
    )


def task_projection() -> Projection:
    """The `tasks` and `task_updates` read model."""
    return Projection(
        name="tasks",
        ddl=DDL,
        task_handlers={kind: _both(handler) for kind, handler in HANDLERS.items()},
        batch_handler=apply_events,
        purge_handler=_purged,
    )
