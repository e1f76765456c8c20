"""What users and tasks spend on models, and the reservations of calls under way, in Postgres.

Before a model call a worker reserves the most the call can cost; afterwards it settles the
reservation with what the call did cost. Every worker reserves through the same rows, so a
budget holds across all of them:

- `budget_ledger`: one row per user and period (`day` and `month`, both always kept, so a
  budget set mid-period counts what was spent before it), with what was spent in it;
- `budget_reservations`: one row per call under way, with its amount and a lease; a worker that
  dies mid-call leaves its row, which stops counting when the lease ends (and is deleted by the
  next reservation of that user);

What a task spent (its per-task caps) is not kept here: its Task.ModelCalled events say it.

A period's rows are needed while it runs, and for a lease after it ended (a call reserved in it
settles into it); the maintenance role's `ledger` job deletes them after that (`purge_ended`),
with the reservations whose lease ended. What users spent stays in the read models (cost_usd).

A reservation locks the user's two ledger rows (`SELECT ... FOR UPDATE`, always in the same
order), adds up the live reservations, and inserts its own only if spent + reserved + its amount
stays within the limit; concurrent workers of one user queue on those row locks, so no two can
both take the last of a budget. Periods are UTC days and months, from the database's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from psycopg import AsyncConnection, Cursor
from psycopg_pool import AsyncConnectionPool

from agenttasks.domain.budget import Limit

DDL = (
    """CREATE TABLE IF NOT EXISTS budget_ledger (
        user_id text NOT NULL,
        period text NOT NULL,
        period_start timestamptz NOT NULL,
        spent numeric NOT NULL DEFAULT 0,
        soft_reached boolean NOT NULL DEFAULT false,
        PRIMARY KEY (user_id, period, period_start)
    )""",
    """CREATE TABLE IF NOT EXISTS budget_reservations (
        id uuid PRIMARY KEY,
        user_id text NOT NULL,
        task_id uuid NOT NULL,
        attempt integer NOT NULL,
        day_start timestamptz NOT NULL,
        month_start timestamptz NOT NULL,
        amount numeric NOT NULL,
        expires_at timestamptz NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS budget_reservations_user ON budget_reservations (user_id)",
)

_CLOCK = """
SELECT date_trunc('day', now(), 'UTC'), date_trunc('month', now(), 'UTC'),
       date_trunc('day', now(), 'UTC') + interval '1 day',
       date_trunc('month', now(), 'UTC') + interval '1 month', now()
"""
_OPEN_ROWS = """
INSERT INTO budget_ledger (user_id, period, period_start)
VALUES (%(user)s, 'day', %(day)s), (%(user)s, 'month', %(month)s)
ON CONFLICT DO NOTHING
"""
_SPENT = """
SELECT period, spent, soft_reached FROM budget_ledger
 WHERE user_id = %(user)s AND ((period = 'day' AND period_start = %(day)s)
                               OR (period = 'month' AND period_start = %(month)s))
 ORDER BY period
"""
_RESERVED = """
SELECT coalesce(sum(amount) FILTER (WHERE day_start = %(day)s), 0),
       coalesce(sum(amount) FILTER (WHERE month_start = %(month)s), 0)
  FROM budget_reservations WHERE user_id = %(user)s AND expires_at > now()
"""


# A period ended more than the grace ago when it began before the period `now() - grace` is in.
# The table keeps about four rows per user with a budget once purged: a scan is cheap, and an
# index on the period would cost every user's first reservation of a day for this hourly sweep.
_ENDED_ROWS = """
DELETE FROM budget_ledger WHERE (user_id, period, period_start) IN (
  SELECT user_id, period, period_start FROM budget_ledger
   WHERE (period = 'day' AND period_start < date_trunc('day', now() - %(grace)s, 'UTC'))
      OR (period = 'month' AND period_start < date_trunc('month', now() - %(grace)s, 'UTC'))
   LIMIT %(limit)s)
"""
# Reservations stop counting when their lease ends; reserve() deletes only its own user's.
_ENDED_RESERVATIONS = """
DELETE FROM budget_reservations WHERE id IN (
  SELECT id FROM budget_reservations WHERE expires_at <= now() LIMIT %(limit)s)
"""


@dataclass(frozen=True)
class Standing:
    """A user's period: spent, reserved by calls under way, and when it ends (UTC)."""

    spent: Decimal
    reserved: Decimal
    period_start: datetime
    resets_at: datetime
    now: datetime

    @property
    def reset_seconds(self) -> int:
        return max(1, int((self.resets_at - self.now).total_seconds() + 0.999))


@dataclass(frozen=True)
class Hold:
    """A reservation taken for one model call."""

    id: UUID
    user: str
    task_id: UUID
    amount: Decimal
    day_start: datetime
    month_start: datetime


@dataclass(frozen=True)
class Refused:
    """A reservation that would pass the user's budget."""

    standing: Standing


@dataclass(frozen=True)
class Settled:
    """After a call: the user's spending in each period, and whether it passed the soft limit."""

    spent: dict[str, Decimal]
    soft_reached_now: bool
    period_start: datetime | None  # of the budget's period, when soft_reached_now


def ensure_budget_tables(cursor: Cursor[Any]) -> None:
    """Creates the ledger's tables if needed (inside the caller's transaction)."""
    for statement in DDL:
        cursor.execute(statement)


class SpendLedger:
    """Reservations and spending per user and task, shared by every worker."""

    def __init__(self, pool: AsyncConnectionPool[Any], lease_seconds: int = 300) -> None:
        self.pool = pool
        self.lease_seconds = lease_seconds

    async def standing(self, user: str, limit: Limit) -> Standing:
        """Where `user` stands in `limit`'s current period (nothing is changed)."""
        async with self.pool.connection() as connection:
            clock = await _clock(connection)
            params = {"user": user, "day": clock[0], "month": clock[1]}
            spent = {row[0]: row[1] for row in await _rows(connection, _SPENT, params)}
            reserved = (await _rows(connection, _RESERVED, params))[0]
        return _standing(limit.period, clock, spent, reserved)

    async def reserve(
        self, user: str, limit: Limit | None, task_id: UUID, attempt: int, amount: Decimal
    ) -> Hold | Refused:
        """Reserves `amount` for a call if `limit` (None: no budget) leaves room for it."""
        async with self.pool.connection() as connection, connection.transaction():
            clock = await _clock(connection)
            params = {"user": user, "day": clock[0], "month": clock[1]}
            await connection.execute(_OPEN_ROWS, params)
            # The row locks queue this user's reservations one behind the other, on any worker.
            locked = await _rows(connection, _SPENT + " FOR UPDATE", params)
            spent = {row[0]: row[1] for row in locked}
            await connection.execute(
                "DELETE FROM budget_reservations WHERE user_id = %(user)s AND expires_at <= now()",
                params,
            )
            reserved = (await _rows(connection, _RESERVED, params))[0]
            if limit is not None:
                standing = _standing(limit.period, clock, spent, reserved)
                if standing.spent + standing.reserved + amount > limit.usd:
                    return Refused(standing)
            hold = Hold(uuid4(), user, task_id, amount, clock[0], clock[1])
            await connection.execute(
                "INSERT INTO budget_reservations (id, user_id, task_id, attempt, day_start, "
                "month_start, amount, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, "
                "now() + make_interval(secs => %s))",
                (hold.id, user, task_id, attempt, hold.day_start, hold.month_start, amount,
                 self.lease_seconds),
            )  # fmt: skip
            return hold

    async def settle(self, hold: Hold, cost: Decimal, soft: tuple[str, Decimal] | None) -> Settled:
        """Replaces the reservation by what the call cost; `soft`: (period, soft limit USD)."""
        params = {"user": hold.user, "day": hold.day_start, "month": hold.month_start}
        async with self.pool.connection() as connection, connection.transaction():
            await connection.execute("DELETE FROM budget_reservations WHERE id = %s", (hold.id,))
            await connection.execute(
                "UPDATE budget_ledger SET spent = spent + %(cost)s WHERE user_id = %(user)s "
                "AND ((period = 'day' AND period_start = %(day)s) "
                "OR (period = 'month' AND period_start = %(month)s))",
                {**params, "cost": cost},
            )
            spent = {row[0]: row[1] for row in await _rows(connection, _SPENT, params)}
            if soft is None or spent.get(soft[0], Decimal(0)) < soft[1]:
                return Settled(spent, False, None)
            start = hold.day_start if soft[0] == "day" else hold.month_start
            # Once per period, whichever worker gets there first.
            crossed = await _rows(
                connection,
                "UPDATE budget_ledger SET soft_reached = true WHERE user_id = %s AND period = %s "
                "AND period_start = %s AND NOT soft_reached RETURNING 1",
                (hold.user, soft[0], start),
            )
            return Settled(spent, bool(crossed), start if crossed else None)

    async def release(self, hold: Hold) -> None:
        """Drops the reservation of a call that failed (nothing was spent that we know of)."""
        async with self.pool.connection() as connection:
            await connection.execute("DELETE FROM budget_reservations WHERE id = %s", (hold.id,))


async def purge_ended(
    connection: AsyncConnection[Any], grace: timedelta, limit: int
) -> tuple[int, bool]:
    """Deletes up to `limit` rows of periods that ended over `grace` ago, and as many reservations
    whose lease ended; returns how many rows went, and whether a bound stopped either."""
    bound = max(1, limit)
    params = {"grace": grace, "limit": bound}
    periods = (await connection.execute(_ENDED_ROWS, params)).rowcount
    reservations = (await connection.execute(_ENDED_RESERVATIONS, params)).rowcount
    return periods + reservations, bound in (periods, reservations)


async def _clock(connection: AsyncConnection[Any]) -> tuple[Any, ...]:
    rows = await _rows(connection, _CLOCK, None)
    return tuple(rows[0])


async def _rows(connection: AsyncConnection[Any], query: str, params: Any) -> list[Any]:
    cursor = await connection.execute(query, params)
    return await cursor.fetchall()


def _standing(
    period: str, clock: tuple[Any, ...], spent: dict[str, Decimal], reserved: Any
) -> Standing:
    index = 0 if period == "day" else 1
    return Standing(
        spent=Decimal(spent.get(period, 0)),
        reserved=Decimal(reserved[index]),
        period_start=clock[index],
        resets_at=clock[2 + index],
        now=clock[4],
    )
