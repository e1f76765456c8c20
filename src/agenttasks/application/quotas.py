"""Quotas that hold across every API replica: counted in Postgres, never in one process.

Two limits per user, checked before a task is created (or retried by hand):

- creations per fixed window: one row per user, `INSERT ... ON CONFLICT ... DO UPDATE ...
  WHERE count < limit RETURNING`: an increment that happens only under the limit, atomic on
  any replica, with the window taken from the database's clock so replicas agree on it;
- tasks queued or running at once: the tasks read model's pending and running rows, plus a
  reservation per admitted write that the read model does not show yet (a reservation is
  cleared once the read model's tracked position passes the write's). A per-user advisory
  lock makes count-and-reserve one step across replicas.

A refused request changes nothing: its transaction is rolled back. The counters commit without
waiting for the disk (`synchronous_commit off`): a crash may forget the last few milliseconds of
counts, which admits at most that many creates more, and saves an fsync per create.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from psycopg import AsyncConnection, Cursor
from psycopg_pool import AsyncConnectionPool

from agenttasks.application.user_limits import Limits

DDL = (
    """CREATE TABLE IF NOT EXISTS quota_windows (
        user_id text PRIMARY KEY,
        seconds integer NOT NULL,
        window_index bigint NOT NULL,
        count integer NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS quota_reservations (
        id uuid PRIMARY KEY,
        user_id text NOT NULL,
        position bigint,
        reserved_at timestamptz NOT NULL DEFAULT now()
    )""",
    "CREATE INDEX IF NOT EXISTS quota_reservations_user ON quota_reservations (user_id)",
)
# A reservation whose write never reported back (its API process died mid-request) lapses.
UNSETTLED_SECONDS = 120
# How long to wait before trying again when the active-tasks limit is full: a guess, since
# when a task finishes is not known (docs/operations.md, "Quotas and rate limits").
ACTIVE_RETRY_SECONDS = 10
_LOCK_KEY = "agenttasks.quota:"

_TAKE_RATE = """
WITH clock AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS now),
taken AS (
    INSERT INTO quota_windows AS w (user_id, seconds, window_index, count)
    SELECT %(user)s, %(seconds)s, floor(now / %(seconds)s)::bigint, 1 FROM clock
    ON CONFLICT (user_id) DO UPDATE SET
        seconds = EXCLUDED.seconds,
        window_index = EXCLUDED.window_index,
        count = CASE WHEN w.window_index = EXCLUDED.window_index AND w.seconds = EXCLUDED.seconds
                     THEN w.count + 1 ELSE 1 END
    WHERE w.window_index <> EXCLUDED.window_index OR w.seconds <> EXCLUDED.seconds
       OR w.count < %(limit)s
    RETURNING w.count
)
SELECT (SELECT count FROM taken), (SELECT now FROM clock)
"""
_CLEAR = """
DELETE FROM quota_reservations r
 WHERE r.user_id = %(user)s
   AND ((r.position IS NOT NULL AND r.position <= coalesce(
            (SELECT position FROM projection_tracking WHERE name = 'tasks'), 0))
        OR (r.position IS NULL
            AND r.reserved_at < now() - make_interval(secs => %(unsettled)s)))
"""
_ACTIVE = """
SELECT (SELECT count(*) FROM tasks
         WHERE created_by = %(user)s AND status IN ('pending', 'running'))
     + (SELECT count(*) FROM quota_reservations WHERE user_id = %(user)s)
"""


class QuotaExceeded(Exception):
    """A create or retry over one of the user's limits; the message says which and when."""

    def __init__(self, which: str, limit: int, reset_seconds: int, policy: str, detail: str):
        super().__init__(detail)
        self.which = which  # "rate" or "active"
        self.limit = limit
        self.reset_seconds = reset_seconds
        self.policy = policy  # the RateLimit-Policy header's value


@dataclass(frozen=True)
class Admission:
    """An admitted write: its reservation (if the active limit holds) and the rate left."""

    reservation: UUID | None
    rate_limit: int | None = None
    rate_remaining: int = 0
    rate_reset: int = 0
    rate_policy: str = ""


def ensure_quota_tables(cursor: Cursor[Any]) -> None:
    """Creates the quota tables if needed (inside the caller's transaction, under its DDL lock)."""
    for statement in DDL:
        cursor.execute(statement)


class Quotas:
    """Admits or refuses a user's writes against their limits, in Postgres."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    async def admit(self, user: str, limits: Limits, *, creation: bool = True) -> Admission:
        """Counts one write (a creation, or a retry by hand when `creation` is False)."""
        rate = limits.rate if creation else None
        if rate is None and limits.max_active <= 0:
            return Admission(None)
        async with self.pool.connection() as connection, connection.transaction():
            # A counter lost in a crash admits one create too many: not worth an fsync each.
            await connection.execute("SET LOCAL synchronous_commit TO off")
            reservation = None
            if limits.max_active > 0:
                reservation = await self._reserve(connection, user, limits.max_active)
            if rate is None:
                return Admission(reservation)
            count, seconds = rate
            cursor = await connection.execute(
                _TAKE_RATE, {"user": user, "seconds": seconds, "limit": count}
            )
            row = await cursor.fetchone()
            assert row is not None
            taken, now = row
            reset = max(1, int(((now // seconds) + 1) * seconds - now + 0.999))
            policy = f"{count};w={seconds}"
            if taken is None:
                raise QuotaExceeded(
                    "rate",
                    count,
                    reset,
                    policy,
                    f"rate limit: at most {limits.rate_text} task creations; "
                    f"try again in {reset} s",
                )
            return Admission(reservation, count, count - int(taken), reset, policy)

    async def settle(self, admission: Admission, position: int | None) -> None:
        """The write is stored at `position` (None: it stored nothing new)."""
        if admission.reservation is None:
            return
        async with self.pool.connection() as connection, connection.transaction():
            await connection.execute("SET LOCAL synchronous_commit TO off")
            if position is None:
                await connection.execute(
                    "DELETE FROM quota_reservations WHERE id = %s", (admission.reservation,)
                )
            else:
                await connection.execute(
                    "UPDATE quota_reservations SET position = %s WHERE id = %s",
                    (position, admission.reservation),
                )

    async def _reserve(self, connection: AsyncConnection[Any], user: str, limit: int) -> UUID:
        await connection.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (_LOCK_KEY + user,)
        )
        params = {"user": user, "unsettled": UNSETTLED_SECONDS}
        await connection.execute(_CLEAR, params)
        cursor = await connection.execute(_ACTIVE, params)
        row = await cursor.fetchone()
        active = int(row[0]) if row else 0
        if active >= limit:
            raise QuotaExceeded(
                "active",
                limit,
                ACTIVE_RETRY_SECONDS,
                f'{limit};w={ACTIVE_RETRY_SECONDS};name="active"',
                f"active tasks limit: {active} of your tasks are queued or running and the "
                f"limit is {limit}; try again when one finishes",
            )
        reservation = uuid4()
        await connection.execute(
            "INSERT INTO quota_reservations (id, user_id) VALUES (%s, %s)", (reservation, user)
        )
        return reservation
