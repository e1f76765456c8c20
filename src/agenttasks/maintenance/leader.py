"""One maintenance leader across replicas: a Postgres session advisory lock on its own connection.

The lock lives as long as the session: a leader that dies (kill -9 included) or loses the
database loses it at once, and a standby, which tries to take it every second, leads from its
next try. Jobs run only while the lock is held; between jobs the leader checks its session, so
a leadership that ended stops running jobs. A job already under way when that happens may
overlap the new leader's first round: every job is idempotent (the aggregate refuses a second
ending of a task), so that costs a refusal, not a wrong result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import Any

import psycopg

from agenttasks.maintenance.scheduler import Scheduler
from agenttasks.outage import Outage

log = logging.getLogger(__name__)

LOCK_KEY = 0x61677474_6D61696E & 0x7FFFFFFFFFFFFFFF  # "agttmain": one leader per database
STANDBY_SECONDS = 1.0  # how often a standby tries the lock
CHECK_SECONDS = 1.0  # how often a leader checks its session while no job is due


def process_name() -> str:
    """How this process names itself on the lock's session (pg_stat_activity.application_name)."""
    return f"agenttasks-maintain {socket.gethostname()}:{os.getpid()}"[:63]


class Maintenance:
    """Leads when it holds the lock, waits as a standby otherwise; runs the jobs while leading."""

    def __init__(self, database_url: str, scheduler: Scheduler, *, name: str = "") -> None:
        self.database_url = database_url
        self.scheduler = scheduler
        self.name = name or process_name()
        self.is_leader = False
        self._outage = Outage("maintenance: Postgres", log)

    async def run(self, stop: asyncio.Event) -> None:
        """Leads or stands by until `stop` is set, surviving restarts of Postgres."""
        while not stop.is_set():
            delay = 0.0
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.database_url, autocommit=True, application_name=self.name
                ) as session:
                    self._outage.restored()
                    await self._stand_by(session, stop)
                    if not stop.is_set():
                        await self._lead(session, stop)
            except (psycopg.Error, OSError) as error:
                delay = self._outage.failed(error)  # logged once per outage
            finally:
                if self.is_leader:
                    log.info("maintenance: no longer leading")
                self.is_leader = False
            await _sleep(stop, delay)

    async def _stand_by(self, session: psycopg.AsyncConnection[Any], stop: asyncio.Event) -> None:
        announced = False
        while not stop.is_set():
            row = await (
                await session.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
            ).fetchone()
            if row and row[0]:
                return
            if not announced:
                log.info("maintenance: standing by (another process leads)")
                announced = True
            await _sleep(stop, STANDBY_SECONDS)

    async def _lead(self, session: psycopg.AsyncConnection[Any], stop: asyncio.Event) -> None:
        self.is_leader = True
        log.info("maintenance: leading (%s)", self.name)
        self.scheduler.restart()
        while not stop.is_set():
            await self.scheduler.run_due(stop.is_set)
            await _sleep(stop, min(self.scheduler.seconds_to_next(), CHECK_SECONDS))
            await session.execute("SELECT 1")  # a dead session raises: leadership ends with it


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    if seconds <= 0:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
