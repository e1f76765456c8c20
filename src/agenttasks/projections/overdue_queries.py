"""Queries over the task read model for the watchdog: attempts still running past their timeout."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import psycopg

_OVERDUE = """
    SELECT id, attempt, timeout_seconds FROM tasks
    WHERE status = 'running'
      AND started_at + make_interval(secs => timeout_seconds + %s) < now()
    LIMIT %s
"""


@dataclass(frozen=True)
class Overdue:
    """A running attempt whose deadline (plus grace) has passed."""

    task_id: UUID
    attempt: int
    timeout_seconds: int


class OverdueAttempts:
    """Finds attempts the read model still shows running after their timeout and a grace."""

    def __init__(self, database_url: str, *, limit: int = 500) -> None:
        self._database_url = database_url
        self._limit = limit  # one sweep's worth; the next sweep takes the rest

    async def find(self, grace_seconds: float) -> list[Overdue]:
        """Up to `limit` overdue attempts; none before any projector has made the table."""
        async with await psycopg.AsyncConnection.connect(
            self._database_url, autocommit=True
        ) as conn:
            try:
                cursor = await conn.execute(_OVERDUE, (grace_seconds, self._limit))
            except psycopg.errors.UndefinedTable:
                return []
            return [Overdue(*row) for row in await cursor.fetchall()]
