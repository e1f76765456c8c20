"""The template usage read model: how often each template is used, and how its tasks fare.

`template_usage` has one row per used template (usage_count, last_used_at), kept as counters so
`popular` is an index scan. `template_usage_tasks` has one row per task made from a template
(its status and the start and end of its current attempt): success rate and average duration
per template are computed from those rows at query time, so retries never need undoing.

Most tasks have no template, and every later event of such a task would send an UPDATE that
matches nothing: the live runner remembers the tasks it saw created without one
(`NoTemplate`) and sends nothing for them.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import msgspec
from psycopg import Cursor, sql

from agenttasks.bus.event_data import TaskCreated, TaskModelCalled, data_of
from agenttasks.bus.messages import BusEvent, PurgedEvent, TaskEvent
from agenttasks.projections.base import Projection, Tables

# Tasks remembered as having no template (the oldest are forgotten first; a forgotten task's
# events send their UPDATE as before). Tasks in flight are what it needs: ~2 MB at most.
REMEMBERED_TASKS = 20_000

DDL = {
    "template_usage": [
        """CREATE TABLE IF NOT EXISTS {t} (
            template_id uuid PRIMARY KEY,
            usage_count bigint NOT NULL,
            last_used_at timestamptz NOT NULL,
            last_position bigint NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS {t_count} ON {t} (usage_count DESC, template_id)",
    ],
    "template_usage_tasks": [
        """CREATE TABLE IF NOT EXISTS {t} (
            task_id uuid PRIMARY KEY,
            template_id uuid NOT NULL,
            template_version integer,
            status text NOT NULL,
            started_at timestamptz,
            finished_at timestamptz,
            last_position bigint NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS {t_template} ON {t} (template_id, status)",
        # Added with cost (docs/cost.md): the task's model calls, every attempt.
        "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS cost_usd numeric NOT NULL DEFAULT 0",
        "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS unpriced_calls integer NOT NULL DEFAULT 0",
    ],
}


def _created(cursor: Cursor[Any], t: Tables, e: TaskEvent) -> None:
    created = data_of(e, TaskCreated)
    template_id = created.template_id
    if template_id is None:
        return
    cursor.execute(
        sql.SQL(
            "INSERT INTO {} (task_id, template_id, template_version, status, last_position)"
            " VALUES (%s, %s, %s, 'pending', %s) ON CONFLICT (task_id) DO NOTHING"
        ).format(t.id("template_usage_tasks")),
        (e.task_id, template_id, created.template_version, e.position),
    )
    # Positions only grow, so a created event seen again cannot count twice.
    cursor.execute(
        sql.SQL(
            "INSERT INTO {t} AS u (template_id, usage_count, last_used_at, last_position)"
            " VALUES (%s, 1, %s, %s) ON CONFLICT (template_id) DO UPDATE SET"
            " usage_count = u.usage_count + 1,"
            " last_used_at = greatest(u.last_used_at, excluded.last_used_at),"
            " last_position = excluded.last_position"
            " WHERE u.last_position < excluded.last_position"
        ).format(t=t.id("template_usage")),
        (template_id, e.timestamp, e.position),
    )


def _changes(status: str, started: bool | None, finished: bool) -> Any:
    """A handler setting the task's status; `started`: True sets, None clears, False keeps."""

    def handler(cursor: Cursor[Any], t: Tables, e: TaskEvent) -> None:
        values: dict[str, Any] = {
            "status": status,
            "finished_at": e.timestamp if finished else None,
        }
        if started is not False:
            values["started_at"] = e.timestamp if started else None
        cursor.execute(
            _update_task(t["template_usage_tasks"], tuple(values)),
            (*values.values(), e.position, e.task_id, e.position),
        )

    return handler


@lru_cache(maxsize=64)
def _update_task(table: str, columns: tuple[str, ...]) -> str:
    # Composed once per table and column set: every task event of every task comes through
    # here (most tasks have no template, and the UPDATE then matches nothing).
    assignments = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in columns)
    return (
        sql.SQL("UPDATE {} SET {}, last_position = %s WHERE task_id = %s AND last_position < %s")
        .format(sql.Identifier(table), assignments)
        .as_string(None)
    )


def _purged(cursor: Cursor[Any], t: Tables, e: PurgedEvent) -> None:
    """A deleted task leaves `template_usage_tasks`; the template's usage keeps counting it.

    Live, its created event counted it already; in a replay after the purge that event is gone
    and the purge counts it instead, so both ways end with the same row.
    """
    cursor.execute(
        sql.SQL("DELETE FROM {} WHERE task_id = %s RETURNING task_id").format(
            t.id("template_usage_tasks")
        ),
        (e.task_id,),
    )
    counted = cursor.fetchone() is not None
    if e.template_id is None:
        return
    cursor.execute(
        sql.SQL(
            "INSERT INTO {t} AS u (template_id, usage_count, last_used_at, last_position)"
            " VALUES (%s, 1, %s, %s) ON CONFLICT (template_id) DO UPDATE SET"
            " usage_count = u.usage_count + %s,"
            " last_used_at = greatest(u.last_used_at, excluded.last_used_at),"
            " last_position = greatest(u.last_position, excluded.last_position)"
        ).format(t=t.id("template_usage")),
        (e.template_id, e.created_at, e.position, 0 if counted else 1),
    )


def _model_called(cursor: Cursor[Any], t: Tables, e: TaskEvent) -> None:
    cost = data_of(e, TaskModelCalled).cost_usd
    cursor.execute(
        sql.SQL(
            "UPDATE {} SET cost_usd = cost_usd + coalesce(%s::numeric, 0),"
            " unpriced_calls = unpriced_calls + %s, last_position = %s"
            " WHERE task_id = %s AND last_position < %s"
        ).format(t.id("template_usage_tasks")),
        (cost, 1 if cost is None else 0, e.position, e.task_id, e.position),
    )


class NoTemplate:
    """The tasks a live runner saw created without a template: their events change no row here.

    A task's template is fixed by its Created event; its id comes back only after a deletion
    (PurgedEvent), which drops it from here. The runner calls `forget` whenever it did not
    apply every event itself (a standby's batches, a reconnect), so what is here is exactly
    what the events since then say.
    """

    def __init__(self, size: int = REMEMBERED_TASKS) -> None:
        self.size = size
        self._tasks: dict[str, None] = {}  # insertion-ordered: the oldest first

    def __len__(self) -> int:
        return len(self._tasks)

    def forget(self) -> None:
        """Drops everything remembered."""
        self._tasks.clear()

    def needed(self, event: BusEvent) -> bool:
        """False for an event of a task known to have no template (and learns from Created)."""
        if isinstance(event, PurgedEvent):
            self._tasks.pop(event.task_id, None)  # a deletion frees the id
            return True
        if not isinstance(event, TaskEvent):
            return True
        if event.type != "created":
            return event.task_id not in self._tasks
        try:
            template_id = data_of(event, TaskCreated).template_id
        except msgspec.ValidationError:
            return True  # the handler meets the same error and quarantines the event
        if template_id is not None:
            self._tasks.pop(event.task_id, None)
            return True
        self._tasks[event.task_id] = None
        if len(self._tasks) > self.size:
            del self._tasks[next(iter(self._tasks))]
        return False  # _created writes nothing for a task without a template


def template_usage_projection() -> Projection:
    """The `template_usage` and `template_usage_tasks` read model."""
    return Projection(
        name="template_usage",
        ddl=DDL,
        task_handlers={
            "created": _created,
            "started": _changes("running", started=True, finished=False),
            "completed": _changes("completed", started=False, finished=True),
            "failed": _changes("failed", started=False, finished=True),
            "cancelled": _changes("cancelled", started=False, finished=True),
            "retried": _changes("pending", started=None, finished=False),
            "model_call": _model_called,
        },
        purge_handler=_purged,
        memo=NoTemplate,
    )
