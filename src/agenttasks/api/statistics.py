"""GET /task-statistics/: figures over the actor's tasks (an admin's: everyone's, on request)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated

from litestar import get
from litestar.params import FromQuery, QueryParameter

from agenttasks.api.deps import CurrentActor, Deps
from agenttasks.api.openapi import QUERY, problems
from agenttasks.api.read_your_writes import STATISTICS, MinPosition, reflecting
from agenttasks.projections.statistics_queries import StatisticsView


@get("/api/v1/utils/task-statistics/", tags=["statistics"], responses=problems(*QUERY))
async def task_statistics(
    actor: CurrentActor,
    deps: Deps,
    # `scope` is a name Litestar reserves (the ASGI scope): bound under another name.
    of: Annotated[str, QueryParameter(name="scope", description="mine (default) or all")] = "mine",
    since: FromQuery[str | None] = None,
    min_position: MinPosition = None,
) -> StatisticsView:
    """Totals by status, type and priority, success rate, durations, tasks per day, tokens, cost."""
    if of not in ("mine", "all"):
        raise ValueError(f"query parameter `scope`: {of[:50]!r} is not one of: mine, all")
    start = parse_since(since) if since is not None else None
    await reflecting(deps, min_position, STATISTICS)
    return await deps.statistics.statistics(actor, everyone=of == "all", since=start)


def parse_since(text: str) -> datetime:
    """An ISO date (midnight UTC) or date-time (UTC if it names no offset); ValueError otherwise."""
    value = text.strip()
    # A `+` left unencoded in a query string arrives as a space.
    for candidate in (value, "+".join(value.rsplit(" ", 1))):
        try:
            if len(candidate) == 10:
                return datetime.combine(date.fromisoformat(candidate), time(), tzinfo=UTC)
            parsed = datetime.fromisoformat(candidate)
            if parsed.tzinfo is None:
                return parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)
        except (ValueError, OverflowError):  # overflow: year 1 moved west of UTC
            continue
    raise ValueError(
        f"query parameter `since`: {text[:50]!r} is not an ISO date (2026-01-31) "
        f"or date-time (2026-01-31T12:00:00Z)"
    )
