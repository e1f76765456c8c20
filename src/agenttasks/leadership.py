"""One leader across replicas: a Postgres session advisory lock held on a connection of its own.

The lock lives as long as its session: a leader that dies (kill -9 included) or loses the
database loses it at once, and a standby, which tries it every second, leads from its next try.
While leading, the role's work gets a `Lead`: `check()` is one round trip on the lock's session
and raises `LostLead` once that session (and so perhaps the lock) is gone; `still()` does the
same at most once a second, for paths too hot for a round trip each time. The work calls one of
them before each thing only a leader may do, and while idle: a leader whose session ended
unnoticed would otherwise go on beside the new one. The maintenance role and the webhook
deliverer's intake lead this way (maintenance/leader.py, webhooks/intake.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from agenttasks.outage import Outage

STANDBY_SECONDS = 1.0  # how often a standby tries the lock
CHECK_SECONDS = 1.0  # at most this long between two checks of `Lead.still`


class LostLead(RuntimeError):
    """The lock's session is gone: another process may be leading now."""


class Lead:
    """The held lock's session, as the leader's work sees it."""

    def __init__(
        self, session: psycopg.AsyncConnection[Any], check_seconds: float = CHECK_SECONDS
    ) -> None:
        self._session = session
        self._check_seconds = check_seconds
        self._checked = time.monotonic()  # the lock was just taken on this session

    async def check(self) -> None:
        """Raises LostLead unless the lock's session still answers (one round trip)."""
        try:
            await self._session.execute("SELECT 1")
        except psycopg.Error as error:
            raise LostLead(f"the leader lock's session ended: {error!r}") from error
        self._checked = time.monotonic()

    async def still(self) -> None:
        """`check()`, unless it went through less than a second ago."""
        if time.monotonic() - self._checked >= self._check_seconds:
            await self.check()


class LockLeader:
    """Runs `work` while this process holds the lock `key`; stands by otherwise."""

    def __init__(
        self,
        database_url: str,
        key: int,
        *,
        name: str,
        role: str,
        logger: logging.Logger,
        standby_seconds: float = STANDBY_SECONDS,
        check_seconds: float = CHECK_SECONDS,
    ) -> None:
        self.database_url = database_url
        self.key = key
        self.name = name[:63]  # pg_stat_activity.application_name of the lock's session
        self.role = role
        self.is_leader = False
        self._log = logger
        self._standby_seconds = standby_seconds
        self._check_seconds = check_seconds
        self._outage = Outage(f"{role}: Postgres", logger)  # the lock's session

    async def run(self, stop: asyncio.Event, work: Callable[[Lead], Awaitable[None]]) -> None:
        """Leads or stands by until `stop` is set, surviving restarts of Postgres."""
        while not stop.is_set():
            delay = 0.0
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.database_url, autocommit=True, application_name=self.name
                ) as session:
                    self._outage.restored()
                    if await self._stand_by(session, stop):
                        self.is_leader = True
                        self._log.info("%s: leading (%s)", self.role, self.name)
                        await work(Lead(session, self._check_seconds))
            except (psycopg.Error, OSError, LostLead) as error:
                delay = self._outage.failed(error)  # logged once per outage
            finally:
                if self.is_leader:
                    self._log.info("%s: no longer leading", self.role)
                self.is_leader = False
            await sleep(stop, delay)

    async def _stand_by(self, session: psycopg.AsyncConnection[Any], stop: asyncio.Event) -> bool:
        announced = False
        while not stop.is_set():
            row = await (
                await session.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
            ).fetchone()
            if row and row[0]:
                return True
            if not announced:
                self._log.info("%s: standing by (another process leads)", self.role)
                announced = True
            await sleep(stop, self._standby_seconds)
        return False


async def sleep(stop: asyncio.Event, seconds: float) -> None:
    """Waits `seconds`, or less if `stop` is set meanwhile."""
    if seconds <= 0:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
