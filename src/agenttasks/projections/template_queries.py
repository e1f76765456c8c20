"""Queries over the template and template usage read models, for the API.

Visibility is decided here: a user sees their own templates and shared ones, an admin sees all,
and an invisible template looks exactly like a missing one. Usage figures cover every task made
from the template, whoever made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from agenttasks.application.prices import format_usd
from agenttasks.application.tasks import Actor
from agenttasks.projections.ordering import order_by


class UsageView(msgspec.Struct, kw_only=True):
    """How a template has been used, and how its tasks fared."""

    usage_count: int
    last_used_at: datetime | None
    completed: int
    failed: int
    cancelled: int
    success_rate: float | None  # completed / (completed + failed + cancelled)
    average_duration_seconds: float | None  # of its completed tasks
    # Added with cost (docs/cost.md): USD per finished task whose every call had a known price
    # (a decimal string; null when there is none); `unpriced_tasks` finished tasks are left out.
    average_cost_usd: str | None = None
    unpriced_tasks: int = 0


class TemplateView(msgspec.Struct, kw_only=True):
    """A template as the API shows it."""

    id: UUID
    name: str
    description: str
    task_type: str
    default_config: dict[str, Any]
    config_schema: dict[str, Any]
    shared: bool
    owner: str
    version: int
    archived: bool
    created_at: datetime
    updated_at: datetime
    usage_count: int  # the same as `usage.usage_count`, at the top as the guide has it
    usage: UsageView


@dataclass(frozen=True)
class TemplateFilter:
    """What to list; None means any."""

    task_type: str | None = None
    search: str | None = None
    mine: bool = False
    archived: bool = False  # include archived templates


ORDERINGS = {"created_at": "t.created_at", "updated_at": "t.updated_at", "name": "t.name",
             "usage": "coalesce(u.usage_count, 0)"}  # fmt: skip
_SELECT = sql.SQL(
    "SELECT t.id, t.name, t.description, t.task_type, t.default_config, t.config_schema,"
    " t.shared, t.owner, t.revision AS version, t.archived, t.created_at, t.updated_at,"
    " coalesce(u.usage_count, 0) AS usage_count, u.last_used_at, s.completed, s.failed,"
    " s.cancelled, s.average_duration_seconds, s.average_cost_usd, s.unpriced_tasks"
    " FROM templates t LEFT JOIN template_usage u ON u.template_id = t.id"
    " LEFT JOIN LATERAL (SELECT count(*) FILTER (WHERE status = 'completed') AS completed,"
    " count(*) FILTER (WHERE status = 'failed') AS failed,"
    " count(*) FILTER (WHERE status = 'cancelled') AS cancelled,"
    " avg(extract(epoch FROM finished_at - started_at)::float8)"
    " FILTER (WHERE status = 'completed') AS average_duration_seconds,"
    " avg(cost_usd) FILTER (WHERE status IN ('completed', 'failed', 'cancelled')"
    " AND unpriced_calls = 0) AS average_cost_usd,"
    " count(*) FILTER (WHERE status IN ('completed', 'failed', 'cancelled')"
    " AND unpriced_calls > 0) AS unpriced_tasks"
    " FROM template_usage_tasks k WHERE k.template_id = t.id) s ON true"
)


_ORDER_COLUMNS = {name: sql.SQL(expression) for name, expression in ORDERINGS.items()}


def ordering_clause(ordering: str) -> sql.Composed:
    """`-created_at`, `usage`, ... as SQL; ValueError naming the allowed values otherwise."""
    return order_by(ordering, _ORDER_COLUMNS, sql.SQL("t.id"))


class TemplateQueries:
    """Reads `templates`, `template_usage` and `template_usage_tasks`."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def get(self, actor: Actor, template_id: UUID) -> TemplateView | None:
        """The template, or None when it does not exist or the actor may not see it."""
        rows = await self._rows(sql.SQL("{} WHERE t.id = %s").format(_SELECT), (template_id,))
        if not rows or not _may_see(actor, rows[0]):
            return None
        return view_of(rows[0])

    async def page(
        self, actor: Actor, filter: TemplateFilter, ordering: str, offset: int, limit: int
    ) -> tuple[int, list[TemplateView]]:
        """(how many match, one page of them)."""
        order = ordering_clause(ordering)
        conditions, params = _visible(actor, filter.mine)
        if not filter.archived:
            conditions.append(sql.SQL("NOT t.archived"))
        if filter.task_type is not None:
            conditions.append(sql.SQL("t.task_type = %s"))
            params.append(filter.task_type)
        if filter.search:
            if "\x00" in filter.search:
                raise ValueError("search must not contain NUL characters")
            conditions.append(sql.SQL("(t.name ILIKE %s ESCAPE '\\' OR t.description ILIKE %s"
                                      " ESCAPE '\\')"))  # fmt: skip
            pattern = f"%{_escape_like(filter.search)}%"
            params += [pattern, pattern]
        where = (
            sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
        )
        total = await self._rows(
            sql.SQL("SELECT count(*) AS n FROM templates t{}").format(where), params
        )
        rows = await self._rows(
            sql.SQL("{}{} ORDER BY {} OFFSET %s LIMIT %s").format(_SELECT, where, order),
            [*params, offset, limit],
        )
        return int(total[0]["n"]), [view_of(row) for row in rows]

    async def popular(self, actor: Actor, limit: int) -> list[TemplateView]:
        """The visible, unarchived templates used most, most used first."""
        conditions, params = _visible(actor, mine=False)
        conditions.append(sql.SQL("NOT t.archived"))
        rows = await self._rows(
            sql.SQL(
                "{} WHERE u.usage_count > 0 AND {}"
                " ORDER BY u.usage_count DESC, u.last_used_at DESC, t.id LIMIT %s"
            ).format(_SELECT, sql.SQL(" AND ").join(conditions)),
            [*params, limit],
        )
        return [view_of(row) for row in rows]

    async def _rows(self, query: sql.Composed, params: Any) -> list[dict[str, Any]]:
        async with self.pool.connection() as connection:
            cursor = connection.cursor(row_factory=dict_row)
            await cursor.execute(query, params)
            return await cursor.fetchall()


def view_of(row: dict[str, Any]) -> TemplateView:
    """A row of the SELECT above as the API's view."""
    completed, failed, cancelled = (int(row[k] or 0) for k in ("completed", "failed", "cancelled"))
    ended = completed + failed + cancelled
    usage = UsageView(
        usage_count=int(row["usage_count"]),
        last_used_at=row["last_used_at"],
        completed=completed,
        failed=failed,
        cancelled=cancelled,
        success_rate=completed / ended if ended else None,
        average_duration_seconds=row["average_duration_seconds"],
        average_cost_usd=_usd(row["average_cost_usd"]),
        unpriced_tasks=int(row["unpriced_tasks"] or 0),
    )
    fields = {k: row[k] for k in TemplateView.__struct_fields__ if k != "usage"}
    return TemplateView(**fields, usage=usage)


def _usd(average: Decimal | None) -> str | None:
    # Averages of decimals run to 20 digits; a millionth of a cent is finer than any price.
    return None if average is None else format_usd(average.quantize(Decimal("1e-8")))


def _visible(actor: Actor, mine: bool) -> tuple[list[sql.Composable], list[Any]]:
    if mine:
        return [sql.SQL("t.owner = %s")], [actor.user_id]
    if actor.is_admin:
        return [], []
    return [sql.SQL("(t.owner = %s OR t.shared)")], [actor.user_id]


def _may_see(actor: Actor, row: dict[str, Any]) -> bool:
    return actor.is_admin or bool(row["shared"]) or row["owner"] == actor.user_id


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
