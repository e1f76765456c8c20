"""Queries over the task read model, for the API. Visibility is decided here, once: a user sees
their own tasks, an admin sees all, and an invisible task looks exactly like a missing one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from agenttasks.application.prices import format_usd
from agenttasks.application.tasks import Actor
from agenttasks.projections.ordering import order_by


class TaskView(msgspec.Struct, kw_only=True):
    """A task as the API shows it."""

    id: UUID
    title: str
    task_type: str
    task_config: dict[str, Any]
    priority: str
    status: str
    progress: int
    result_data: dict[str, Any] | None
    error_message: str | None
    # Why a failed task failed (timeout, invalid_input, ...); null otherwise. Added later.
    error_kind: str | None = None
    created_by: str
    template_id: UUID | None
    attempt: int
    max_retries: int
    timeout_seconds: int
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime
    webhook_url: str | None = None  # where the task's end is posted (docs/webhooks.md)
    # Added with cost (docs/cost.md): USD as a decimal string, every attempt's model calls;
    # null when any call's price is unknown (then `unpriced_calls` says how many).
    cost_usd: str | None = "0"
    tokens: dict[str, int] = msgspec.field(default_factory=dict)  # {prompt, completion, cached}
    model_calls: int = 0
    unpriced_calls: int = 0


class UpdateView(msgspec.Struct, kw_only=True):
    """One step in a task's update history."""

    position: int
    task_id: UUID
    version: int
    type: str
    update_type: str
    status: str
    progress: int
    message: str
    data: dict[str, Any]
    timestamp: datetime
    # Added for the guide's clients (docs/api.md, "Coming from the guide"); additive only.
    progress_percentage: int  # the same as `progress`, under the guide's name
    partial: dict[str, Any] | None  # a result's streamed piece {offset, text}, flat; else null


@dataclass(frozen=True)
class TaskFilter:
    """What to list: each field narrows the list; None means any."""

    status: str | None = None
    task_type: str | None = None
    priority: str | None = None
    search: str | None = None
    statuses: tuple[str, ...] = ()


ORDERINGS = {
    "created_at": "created_at",
    "updated_at": "updated_at",
    "priority": "priority_rank",
    "status": "status",
    "title": "title",
    "progress": "progress",
}
_COMPUTED = ("cost_usd", "tokens")
_TASK_COLUMNS = sql.SQL(", ").join(
    sql.Identifier(f)
    for f in (
        *(f for f in TaskView.__struct_fields__ if f not in _COMPUTED),
        "cost_usd", "prompt_tokens", "completion_tokens", "cached_tokens",
    )
)  # fmt: skip


def token_counts(prompt: int, completion: int, cached: int) -> dict[str, int]:
    """A task's `tokens`: its model calls' sums, every attempt (cached ones are in prompt)."""
    return {"prompt": prompt, "completion": completion, "cached": cached}


def task_view(row: dict[str, Any]) -> TaskView:
    """A `tasks` row as the API shows it (cost as a string, tokens grouped)."""
    tokens = token_counts(
        row.pop("prompt_tokens"), row.pop("completion_tokens"), row.pop("cached_tokens")
    )
    cost = row.pop("cost_usd")
    view = msgspec.convert(row, TaskView)
    view.tokens = tokens
    view.cost_usd = None if row["unpriced_calls"] else format_usd(cost)
    return view


# `partial`: the stored piece stands flat in `data.partial` since ResultRecorded v2; rows
# projected before v2 have it only nested, at `data.data.partial`.
_UPDATE_COLUMNS = sql.SQL(
    "position, task_id, version, kind AS type, update_type, status, progress, message, data,"
    " timestamp, progress AS progress_percentage,"
    " CASE WHEN kind = 'result' THEN coalesce(nullif(data->'partial', 'null'::jsonb),"
    " data->'data'->'partial') END AS partial"
)


_ORDER_COLUMNS = {name: sql.Identifier(column) for name, column in ORDERINGS.items()}


def ordering_clause(ordering: str) -> sql.Composed:
    """`created_at`, `-priority`, ... as SQL; ValueError naming the allowed values otherwise."""
    return order_by(ordering, _ORDER_COLUMNS, sql.SQL("id"))


class TaskQueries:
    """Reads the `tasks` and `task_updates` tables."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def get(self, actor: Actor, task_id: UUID) -> TaskView | None:
        """The task, or None when it does not exist or the actor may not see it."""
        rows = await self._rows(
            sql.SQL("SELECT {} FROM tasks WHERE id = %s").format(_TASK_COLUMNS), (task_id,)
        )
        if not rows or not actor.may_see(rows[0]["created_by"]):
            return None
        return task_view(rows[0])

    async def page(
        self, actor: Actor, filter: TaskFilter, ordering: str, offset: int, limit: int
    ) -> tuple[int, list[TaskView]]:
        """(how many match, one page of them)."""
        order = ordering_clause(ordering)
        conditions: list[sql.Composable] = []
        params: list[Any] = []
        if not actor.is_admin:
            conditions.append(sql.SQL("created_by = %s"))
            params.append(actor.user_id)
        for column in ("status", "task_type", "priority"):
            if (value := getattr(filter, column)) is not None:
                conditions.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
                params.append(value)
        if filter.statuses:
            conditions.append(sql.SQL("status = ANY(%s)"))
            params.append(list(filter.statuses))
        if filter.search:
            if "\x00" in filter.search:
                raise ValueError("search must not contain NUL characters")
            conditions.append(sql.SQL("title ILIKE %s ESCAPE '\\'"))
            params.append(f"%{_escape_like(filter.search)}%")
        where = (
            sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
        )
        total = await self._rows(sql.SQL("SELECT count(*) AS n FROM tasks{}").format(where), params)
        page = await self._rows(
            sql.SQL("SELECT {} FROM tasks{} ORDER BY {} OFFSET %s LIMIT %s").format(
                _TASK_COLUMNS, where, order
            ),
            [*params, offset, limit],
        )
        return int(total[0]["n"]), [task_view(row) for row in page]

    async def updates(
        self, actor: Actor, task_id: UUID, after: int, offset: int, limit: int
    ) -> tuple[int, list[UpdateView]] | None:
        """(how many follow `after`, one page of them oldest first), or None if not visible."""
        if await self.get(actor, task_id) is None:
            return None
        total = await self._rows(
            sql.SQL("SELECT count(*) AS n FROM task_updates WHERE task_id = %s AND position > %s"),
            (task_id, after),
        )
        rows = await self._rows(
            sql.SQL(
                "SELECT {} FROM task_updates WHERE task_id = %s AND position > %s"
                " ORDER BY position OFFSET %s LIMIT %s"
            ).format(_UPDATE_COLUMNS),
            (task_id, after, offset, limit),
        )
        return int(total[0]["n"]), [msgspec.convert(row, UpdateView) for row in rows]

    async def counts_by_status(self, actor: Actor) -> dict[str, int]:
        """How many of the actor's (or, for admins, all) tasks are in each status."""
        where = sql.SQL("") if actor.is_admin else sql.SQL(" WHERE created_by = %s")
        params = [] if actor.is_admin else [actor.user_id]
        rows = await self._rows(
            sql.SQL("SELECT status, count(*) AS n FROM tasks{} GROUP BY status").format(where),
            params,
        )
        return {row["status"]: int(row["n"]) for row in rows}

    async def _rows(self, query: sql.SQL | sql.Composed, params: Any) -> list[dict[str, Any]]:
        async with self.pool.connection() as connection:
            cursor = connection.cursor(row_factory=dict_row)
            await cursor.execute(query, params)
            return await cursor.fetchall()


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
