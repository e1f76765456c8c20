"""One maintenance leader across replicas: leadership.py's advisory lock, key "agttmain".

Jobs run only while the lock is held. The leader checks its session before each job and after
each wait (at most a second while idle), so a leadership that ended stops running jobs, in the
middle of a round of due jobs too (one round trip beside a job's own queries). A job already
under way when that happens may overlap the new leader's first round: every job is idempotent
(the aggregate refuses a second ending of a task), so that costs a refusal, not a wrong result.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from agenttasks.leadership import CHECK_SECONDS, Lead, LockLeader, sleep
from agenttasks.maintenance.scheduler import Scheduler

log = logging.getLogger(__name__)

LOCK_KEY = 0x61677474_6D61696E & 0x7FFFFFFFFFFFFFFF  # "agttmain": one leader per database


def process_name() -> str:
    """How this process names itself on the lock's session (pg_stat_activity.application_name)."""
    return f"agenttasks-maintain {socket.gethostname()}:{os.getpid()}"[:63]


class Maintenance:
    """Leads when it holds the lock, waits as a standby otherwise; runs the jobs while leading."""

    def __init__(self, database_url: str, scheduler: Scheduler, *, name: str = "") -> None:
        self.database_url = database_url
        self.scheduler = scheduler
        self.name = name or process_name()
        self._leader = LockLeader(
            database_url, LOCK_KEY, name=self.name, role="maintenance", logger=log
        )

    @property
    def is_leader(self) -> bool:
        """Whether this process holds the maintenance lock now."""
        return self._leader.is_leader

    async def run(self, stop: asyncio.Event) -> None:
        """Leads or stands by until `stop` is set, surviving restarts of Postgres."""

        async def work(held: Lead) -> None:
            await self._lead(held, stop)

        await self._leader.run(stop, work)

    async def _lead(self, lead: Lead, stop: asyncio.Event) -> None:
        self.scheduler.restart()
        while not stop.is_set():
            await self.scheduler.run_due(stop.is_set, before_each=lead.check)
            await sleep(stop, min(self.scheduler.seconds_to_next(), CHECK_SECONDS))
            await lead.check()  # a dead session raises: leadership ends with it
