"""The spend ledger kept a row per user and UTC day (and month) for ever, and an expired
reservation for ever when its user made no other: tables that grew with every user and day.
The maintenance role's `ledger` job now deletes, a batch at a time, what no budget period can
still need; what the current period spent and reserves is untouched. (Failed before the change:
there was no such job, nor `LedgerPurge` to import.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from agenttasks.application.spend_ledger import Hold, SpendLedger, ensure_budget_tables
from agenttasks.domain.budget import Limit
from agenttasks.maintenance.jobs import LedgerPurge

DAILY, MONTHLY = Limit(Decimal("5"), "day"), Limit(Decimal("50"), "month")
OLD_ROW = """INSERT INTO budget_ledger (user_id, period, period_start, spent, soft_reached)
VALUES (%s, %s, date_trunc(%s, now() - %s::interval, 'UTC'), 3.5, true)"""
RESERVATION = """INSERT INTO budget_reservations (id, user_id, task_id, attempt, day_start,
    month_start, amount, expires_at) VALUES (%s, %s, %s, 1, date_trunc('day', now(), 'UTC'),
    date_trunc('month', now(), 'UTC'), 1, now() - interval '1 minute')"""


@pytest.fixture
async def ledger(database_url: str) -> AsyncIterator[SpendLedger]:
    with psycopg.connect(database_url) as connection, connection.cursor() as cursor:
        ensure_budget_tables(cursor)
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(database_url, open=False)
    await pool.open()
    try:
        yield SpendLedger(pool, lease_seconds=300)
    finally:
        await pool.close()


async def standing(ledger: SpendLedger, limit: Limit) -> tuple[Any, ...]:
    found = await ledger.standing("ann", limit)
    return found.spent, found.reserved, found.period_start, found.resets_at


def rows(database_url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as connection:
        return connection.execute(query).fetchall()


async def test_ended_periods_go_in_batches_and_the_current_spend_stays(
    database_url: str, ledger: SpendLedger
) -> None:
    task = uuid4()
    hold = await ledger.reserve("ann", DAILY, task, 1, Decimal("0.5"))
    assert isinstance(hold, Hold)
    await ledger.settle(hold, Decimal("0.25"), None)
    live = await ledger.reserve("ann", DAILY, task, 1, Decimal("0.5"))  # a call under way
    assert isinstance(live, Hold)
    with psycopg.connect(database_url) as connection:
        for user in ("ann", "bob"):
            for days in (2, 3, 40):
                connection.execute(OLD_ROW, (user, "day", "day", f"{days} days"))
            for months in (2, 14):
                connection.execute(OLD_ROW, (user, "month", "month", f"{months} months"))
        connection.execute(OLD_ROW, ("ann", "day", "day", "1 day"))  # within the grace: kept
        for user in ("bob", "cid", "dan"):  # leases that ended; no later reservation of theirs
            connection.execute(RESERVATION, (uuid4(), user, uuid4()))
    before = [await standing(ledger, limit) for limit in (DAILY, MONTHLY)]
    assert before[0][:2] == before[1][:2] == (Decimal("0.25"), Decimal("0.5"))

    purge = LedgerPurge(database_url, grace=timedelta(days=1), batch=4)
    sweeps = [await purge.sweep()]
    while sweeps[-1].more:
        assert len(sweeps) < 10, sweeps
        sweeps.append(await purge.sweep())

    # Ten ended periods' rows and three ended leases, at most four rows of each table a sweep.
    assert [(s.done, s.more) for s in sweeps] == [(4 + 3, True), (4, True), (2, False)]
    kept = rows(database_url, "SELECT user_id, period FROM budget_ledger ORDER BY 1, 2")
    assert kept == [("ann", "day"), ("ann", "day"), ("ann", "month")]  # today, yesterday, month
    reservations = rows(database_url, "SELECT id FROM budget_reservations")
    assert reservations == [(live.id,)]  # the call under way keeps its reservation
    assert [await standing(ledger, limit) for limit in (DAILY, MONTHLY)] == before
    assert (await purge.sweep()).done == 0  # nothing more: the next sweeps find nothing


async def test_a_database_without_the_ledger_is_swept_quietly(database_url: str) -> None:
    swept = await LedgerPurge(database_url, grace=timedelta(minutes=5), batch=10).sweep()
    assert (swept.done, swept.more) == (0, False)
