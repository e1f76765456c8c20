"""Queries over the task read model for the maintenance role: tasks pending for too long."""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta
from uuid import UUID

import psycopg

# A pending task's row changes only when it is created or retried, so `updated_at` is when it
# was queued. No ORDER BY: any stale tasks will do, the next sweep takes the rest, and the
# status index finds the pending rows without sorting them.
_STALE = """
    SELECT id, attempt FROM tasks
    WHERE status = 'pending' AND updated_at < now() - %s AND NOT (id = ANY(%s))
    LIMIT %s
"""


class StalePending:
    """Finds tasks the read model shows pending for longer than a TTL."""

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url

    async def find(
        self, ttl: timedelta, limit: int, skip: Collection[UUID] = ()
    ) -> list[tuple[UUID, int]]:
        """Up to `limit` (task id, attempt) pairs but `skip`; none before the table exists."""
        async with await psycopg.AsyncConnection.connect(
            self._database_url, autocommit=True
        ) as conn:
            try:
                cursor = await conn.execute(_STALE, (ttl, list(skip), limit))
            except psycopg.errors.UndefinedTable:
                return []
            return [(row[0], row[1]) for row in await cursor.fetchall()]
