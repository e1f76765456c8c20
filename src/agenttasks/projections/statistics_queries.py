"""Queries over the statistics read model: exact figures computed from per-task rows.

Durations are those of completed tasks: from the start of the attempt that completed to its
completion. Percentiles are `percentile_cont` (linear interpolation), exact at query time.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import msgspec
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from agenttasks.application.prices import format_usd
from agenttasks.application.tasks import Actor
from agenttasks.domain.rules import PRIORITIES, STATUSES, TASK_TYPES


class DurationStats(msgspec.Struct, kw_only=True):
    """Run time of completed tasks, in seconds."""

    count: int
    average_seconds: float | None
    p50_seconds: float | None
    p95_seconds: float | None


class DayCount(msgspec.Struct, kw_only=True):
    """Tasks created on one UTC day."""

    date: date
    count: int


class TokenStats(msgspec.Struct, kw_only=True):
    """Tokens recorded by completed tasks (result_data.usage)."""

    tasks_with_usage: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CostGroup(msgspec.Struct, kw_only=True):
    """What the model calls of one group's tasks cost (docs/cost.md)."""

    key: str  # the user, task type, template id ("none": no template) or UTC day of creation
    tasks: int
    model_calls: int
    cost_usd: str  # the priced calls' sum, a decimal string
    unpriced_calls: int  # calls with no known price: cost_usd is then a lower bound
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int


class CostStats(msgspec.Struct, kw_only=True):
    """Cost of the tasks in scope, in total and by user, task type, template and day."""

    total: CostGroup
    by_user: list[CostGroup]  # a user sees only their own row; an admin (scope=all) everyone's
    by_type: list[CostGroup]
    by_template: list[CostGroup]
    by_day: list[CostGroup]  # by the UTC day each task was created


class StatisticsView(msgspec.Struct, kw_only=True):
    """The figures of GET /task-statistics/."""

    scope: str  # "mine" or "all"
    since: datetime | None
    total: int
    by_status: dict[str, int]
    by_type: dict[str, int]
    by_priority: dict[str, int]
    success_rate: float | None  # completed / (completed + failed + cancelled); None if none ended
    duration: DurationStats
    tasks_per_day: list[DayCount]
    tokens: TokenStats
    cost: CostStats | None = None  # added with cost; always present in answers


_GROUPS = (("status", STATUSES), ("task_type", TASK_TYPES), ("priority", PRIORITIES))


class StatisticsQueries:
    """Reads the `task_statistics` table."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def statistics(
        self, actor: Actor, *, everyone: bool, since: datetime | None
    ) -> StatisticsView:
        """The actor's figures (everyone's if `everyone`, which only admins may ask for)."""
        if everyone and not actor.is_admin:
            raise PermissionError("only admins may see everyone's statistics (scope=all)")
        conditions: list[sql.Composable] = []
        params: list[Any] = []
        if not everyone:
            conditions.append(sql.SQL("created_by = %s"))
            params.append(actor.user_id)
        if since is not None:
            conditions.append(sql.SQL("created_at >= %s"))
            params.append(since)
        where = sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("true")
        async with self.pool.connection() as connection, connection.transaction():
            # One snapshot for every figure, so they agree with each other.
            await connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            return await _figures(connection, where, params, everyone, since)


async def _figures(
    connection: AsyncConnection[Any],
    where: sql.Composable,
    params: list[Any],
    everyone: bool,
    since: datetime | None,
) -> StatisticsView:
    cursor = connection.cursor(row_factory=dict_row)
    groups: dict[str, dict[str, int]] = {}
    for column, names in _GROUPS:
        await cursor.execute(
            sql.SQL(
                "SELECT {c} AS k, count(*) AS n FROM task_statistics WHERE {w} GROUP BY {c}"
            ).format(c=sql.Identifier(column), w=where),
            params,
        )
        counts = {str(row["k"]): int(row["n"]) for row in await cursor.fetchall()}
        groups[column] = {name: counts.get(name, 0) for name in names} | counts
    await cursor.execute(
        sql.SQL(
            "SELECT count(d) AS n, avg(d) AS average,"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY d) AS p50,"
            " percentile_cont(0.95) WITHIN GROUP (ORDER BY d) AS p95"
            " FROM (SELECT extract(epoch FROM finished_at - started_at)::float8 AS d"
            " FROM task_statistics WHERE {} AND status = 'completed'"
            " AND started_at IS NOT NULL) durations"
        ).format(where),
        params,
    )
    d = await cursor.fetchone()
    assert d is not None
    await cursor.execute(
        sql.SQL(
            "SELECT (created_at AT TIME ZONE 'UTC')::date AS date, count(*) AS count"
            " FROM task_statistics WHERE {} GROUP BY 1 ORDER BY 1"
        ).format(where),
        params,
    )
    days = [DayCount(date=row["date"], count=int(row["count"])) for row in await cursor.fetchall()]
    await cursor.execute(
        sql.SQL(
            "SELECT count(*) FILTER (WHERE prompt_tokens IS NOT NULL"
            " OR completion_tokens IS NOT NULL) AS n,"
            " coalesce(sum(prompt_tokens), 0) AS prompt,"
            " coalesce(sum(completion_tokens), 0) AS completion"
            " FROM task_statistics WHERE {}"
        ).format(where),
        params,
    )
    tokens = await cursor.fetchone()
    assert tokens is not None
    cost = CostStats(
        total=(await _cost_groups(cursor, sql.SQL("'all'"), where, params) or [_NO_COST])[0],
        by_user=await _cost_groups(cursor, sql.SQL("created_by"), where, params),
        by_type=await _cost_groups(cursor, sql.SQL("task_type"), where, params),
        by_template=await _cost_groups(
            cursor, sql.SQL("coalesce(template_id::text, 'none')"), where, params
        ),
        by_day=await _cost_groups(
            cursor, sql.SQL("((created_at AT TIME ZONE 'UTC')::date)::text"), where, params
        ),
    )
    by_status = groups["status"]
    ended = by_status["completed"] + by_status["failed"] + by_status["cancelled"]
    return StatisticsView(
        scope="all" if everyone else "mine",
        since=since,
        total=sum(by_status.values()),
        by_status=by_status,
        by_type=groups["task_type"],
        by_priority=groups["priority"],
        success_rate=by_status["completed"] / ended if ended else None,
        duration=DurationStats(
            count=int(d["n"]),
            average_seconds=_float(d["average"]),
            p50_seconds=_float(d["p50"]),
            p95_seconds=_float(d["p95"]),
        ),
        tasks_per_day=days,
        tokens=TokenStats(
            tasks_with_usage=int(tokens["n"]),
            prompt_tokens=int(tokens["prompt"]),
            completion_tokens=int(tokens["completion"]),
            total_tokens=int(tokens["prompt"]) + int(tokens["completion"]),
        ),
        cost=cost,
    )


async def _cost_groups(
    cursor: Any, key: sql.Composable, where: sql.Composable, params: list[Any]
) -> list[CostGroup]:
    await cursor.execute(
        sql.SQL(
            "SELECT {k} AS key, count(*) AS tasks, coalesce(sum(model_calls), 0) AS calls,"
            " coalesce(sum(cost_usd), 0) AS cost, coalesce(sum(unpriced_calls), 0) AS unpriced,"
            " coalesce(sum(call_prompt_tokens), 0) AS prompt,"
            " coalesce(sum(call_completion_tokens), 0) AS completion,"
            " coalesce(sum(cached_tokens), 0) AS cached"
            " FROM task_statistics WHERE {w} GROUP BY 1 ORDER BY 1"
        ).format(k=key, w=where),
        params,
    )
    return [
        CostGroup(
            key=str(row["key"]),
            tasks=int(row["tasks"]),
            model_calls=int(row["calls"]),
            cost_usd=format_usd(row["cost"]),
            unpriced_calls=int(row["unpriced"]),
            prompt_tokens=int(row["prompt"]),
            completion_tokens=int(row["completion"]),
            cached_tokens=int(row["cached"]),
        )
        for row in await cursor.fetchall()
    ]


# The total when no task is in scope.
_NO_COST = CostGroup(
    key="all", tasks=0, model_calls=0, cost_usd="0", unpriced_calls=0,
    prompt_tokens=0, completion_tokens=0, cached_tokens=0,
)  # fmt: skip


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
