"""The task read model: `tasks` (one row per task, its current state) and `task_updates` (one row
per task event: the update history a frontend shows).

A batch folds each task's events into one write of its row (tasks_fold.py), and writes the
batch's history rows in one statement (each is its event's alone, keyed by position, so one by
one gives the same).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from psycopg import Cursor, sql
from psycopg.types.json import Jsonb

from agenttasks.bus.messages import BusEvent, PurgedEvent, TaskEvent
from agenttasks.projections.base import Projection, Tables
from agenttasks.projections.tasks_fold import KINDS, send_rows, write

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


# Queries are composed once per physical table and kept as text: composing them per event was
# a tenth of the live projector's time.
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


def apply_events(cursor: Cursor[Any], t: Tables, events: list[BusEvent]) -> None:
    """Writes each task's row once for the batch's events, then its history rows at once."""
    updates = [e for e in events if isinstance(e, TaskEvent) and e.type in KINDS]
    if not updates:
        return
    write(cursor, t["tasks"], updates)
    if len(updates) == 1:
        _record_update(cursor, t, updates[0])
    else:
        rows = [
            {
                "position": e.position, "task_id": e.task_id, "version": e.version,
                "kind": e.type, "update_type": e.update_type, "status": e.status,
                "progress": e.progress, "message": e.message, "data": _update_data(e),
                "timestamp": e.timestamp,
            }
            for e in updates
        ]  # fmt: skip
        send_rows(cursor, _insert_updates(t["task_updates"]), rows)


def _one(cursor: Cursor[Any], t: Tables, e: TaskEvent) -> None:
    apply_events(cursor, t, [e])


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
        task_handlers=dict.fromkeys(KINDS, _one),
        batch_handler=apply_events,
        purge_handler=_purged,
    )
