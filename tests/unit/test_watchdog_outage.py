"""The watchdog says once that its sweep lost the database, and once that it is back."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from agenttasks.workers.watchdog import Watchdog
from tests.waiting import wait_until


class Subscription:
    async def close(self) -> None:
        pass


class QuietBus:
    """Our Bus interface, as far as the watchdog uses it: a subscription that never fires."""

    async def subscribe(self, subject: str, handler: Any) -> Subscription:
        return Subscription()


class DatabaseAway:
    """OverdueAttempts whose database is down for the first `failures` sweeps."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sweeps = 0

    async def find(self, grace_seconds: float) -> list[Any]:
        self.sweeps += 1
        if self.sweeps <= self.failures:
            raise psycopg.OperationalError("connection refused\nIs the server running?")
        return []


async def test_a_database_outage_is_logged_when_it_starts_and_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    overdue = DatabaseAway(failures=6)
    with ThreadPoolExecutor(1) as executor:
        watchdog = Watchdog(None, QuietBus(), overdue, executor, every=0.001)  # type: ignore[arg-type]
        stop = asyncio.Event()
        with caplog.at_level(logging.WARNING, logger="agenttasks.workers.watchdog"):
            running = asyncio.create_task(watchdog.run(stop))
            await wait_until(lambda: overdue.sweeps > 8)
            stop.set()
            await running
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines  # six failed sweeps, one line; then one line for the recovery
    assert lines[0].startswith("watchdog: the timeout sweep lost (connection refused)")
    assert lines[1].startswith("watchdog: the timeout sweep restored after")
    assert all("Traceback" not in line and "\n" not in line for line in lines)
