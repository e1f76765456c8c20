"""Running tasks per user across every worker process: slots counted in Postgres.

A worker takes a slot for an attempt before starting it and gives it back when the attempt
ends. A slot is a row with a lease that the holder's heartbeats extend; a worker that dies
holds its slots only until their lease ends (the same `ack_wait` after which JetStream offers
its messages to another worker). Count-and-take is one step under a per-user advisory lock.
"""

from __future__ import annotations

from typing import Any, Protocol
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

DDL = """CREATE TABLE IF NOT EXISTS user_run_slots (
    task_id uuid NOT NULL,
    attempt integer NOT NULL,
    user_id text NOT NULL,
    worker_id text NOT NULL,
    lease_until timestamptz NOT NULL,
    PRIMARY KEY (task_id, attempt)
)"""
_DDL_LOCK = 0x61677474_736C6F74  # "agttslot": concurrent CREATE ... IF NOT EXISTS collide
_LOCK_KEY = "agenttasks.slots:"
_TAKE = """
WITH lapsed AS (
    DELETE FROM user_run_slots
     WHERE user_id = %(user)s AND lease_until < now()
       AND NOT (task_id = %(task)s AND attempt = %(attempt)s)
)
INSERT INTO user_run_slots (task_id, attempt, user_id, worker_id, lease_until)
SELECT %(task)s, %(attempt)s, %(user)s, %(worker)s, now() + make_interval(secs => %(lease)s)
 WHERE (SELECT count(*) FROM user_run_slots
         WHERE user_id = %(user)s AND lease_until >= now()
           AND NOT (task_id = %(task)s AND attempt = %(attempt)s)) < %(limit)s
ON CONFLICT (task_id, attempt) DO UPDATE
   SET worker_id = EXCLUDED.worker_id, lease_until = EXCLUDED.lease_until
RETURNING 1
"""


class RunSlots(Protocol):
    """Where a worker takes a per-user slot before starting an attempt."""

    async def take(self, user: str, task_id: UUID, attempt: int, worker_id: str) -> bool:
        """True if the attempt may start now (the slot is held until released or lapsed)."""
        ...

    async def release(self, task_id: UUID, attempt: int) -> None:
        """Gives the attempt's slot back."""
        ...

    async def renew(self, worker_id: str) -> None:
        """Extends the lease of every slot `worker_id` holds."""
        ...


class NoSlots:
    """No limit across workers: every attempt may start."""

    async def take(self, user: str, task_id: UUID, attempt: int, worker_id: str) -> bool:
        """Always True."""
        return True

    async def release(self, task_id: UUID, attempt: int) -> None:
        """Nothing to give back."""

    async def renew(self, worker_id: str) -> None:
        """Nothing to renew."""


class UserSlots:
    """At most `limit` running attempts per user over all workers, with `lease` second leases."""

    def __init__(self, pool: AsyncConnectionPool[Any], limit: int, lease: float) -> None:
        self.pool = pool
        self.limit = limit
        self.lease = lease

    async def ensure_table(self) -> None:
        """Creates the slots table if needed."""
        async with self.pool.connection() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
            await connection.execute(DDL)

    async def take(self, user: str, task_id: UUID, attempt: int, worker_id: str) -> bool:
        """True if the attempt may start now (the slot is held until released or lapsed)."""
        params = {
            "user": user,
            "task": task_id,
            "attempt": attempt,
            "worker": worker_id,
            "lease": self.lease,
            "limit": self.limit,
        }
        async with self.pool.connection() as connection, connection.transaction():
            await connection.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (_LOCK_KEY + user,)
            )
            cursor = await connection.execute(_TAKE, params)
            return await cursor.fetchone() is not None

    async def release(self, task_id: UUID, attempt: int) -> None:
        """Gives the attempt's slot back."""
        async with self.pool.connection() as connection:
            await connection.execute(
                "DELETE FROM user_run_slots WHERE task_id = %s AND attempt = %s",
                (task_id, attempt),
            )

    async def renew(self, worker_id: str) -> None:
        """Extends the lease of every slot `worker_id` holds."""
        async with self.pool.connection() as connection:
            await connection.execute(
                "UPDATE user_run_slots SET lease_until = now() + make_interval(secs => %s) "
                "WHERE worker_id = %s",
                (self.lease, worker_id),
            )
