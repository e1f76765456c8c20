"""Waiting until a read model has applied a given position: read-your-writes for the API.

Each API process holds one LISTEN connection on the channel projectors notify after every
commit (one message per batch, naming every read model that moved), and wakes the requests
waiting for a position at or below the one announced.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections import defaultdict

import psycopg
from psycopg import pq

from agenttasks.outage import Outage
from agenttasks.projections.base import NOTIFY_CHANNEL, read_announcement

log = logging.getLogger(__name__)


class ProjectionWatcher:
    """Knows how far each projection has got, and lets callers wait for a position."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._positions: dict[str, int] = defaultdict(int)
        # Per projection, a heap of (position, n, future): an announcement wakes only the
        # waiters it satisfies, not every waiting request.
        self._waiters: dict[str, list[tuple[int, int, asyncio.Future[bool]]]] = defaultdict(list)
        self._counter = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._outage = Outage("projection watcher: Postgres", log)

    async def start(self) -> None:
        """Starts listening (and returns once it is)."""
        self._task = asyncio.create_task(self._listen())
        await asyncio.wait_for(self._listening.wait(), 10)

    async def stop(self) -> None:
        """Stops listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def position(self, name: str) -> int:
        """The last position projection `name` is known to have applied."""
        return self._positions[name]

    async def wait(self, name: str, position: int, timeout: float = 5.0) -> bool:  # noqa: ASYNC109
        """True once projection `name` has applied `position`; False after `timeout` seconds."""
        if self._positions[name] >= position:
            return True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        heapq.heappush(self._waiters[name], (position, next(self._counter), waiter))
        # A timer that answers False, rather than wait_for + shield (a task and a second
        # future for every create's wait).
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()
            waiter.cancel()  # a timed-out waiter is skipped when the heap reaches it

    async def _listen(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.database_url, autocommit=True
                ) as connection:
                    # What psycopg reads itself (with the LISTEN's and the load's replies).
                    connection.add_notify_handler(lambda notify: self._announced(notify.payload))
                    await connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    await self._load(connection)
                    self._outage.restored()
                    self._listening.set()
                    await self._read(connection.pgconn)
            except psycopg.Error as error:
                await asyncio.sleep(self._outage.failed(error))  # logged once per outage

    async def _read(self, pgconn: pq.abc.PGconn) -> None:
        """Takes the announcements off the LISTEN socket until the connection fails.

        One reader for the connection's life: psycopg's `notifies()` added and removed a
        reader, and made a future and a timer, for every NOTIFY (11.6% of the API's CPU at
        32 clients, APIPATH's profile); nothing else uses this connection meanwhile.
        """
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            try:
                pgconn.consume_input()
            except psycopg.OperationalError as error:  # the server or the network went away
                if not lost.done():
                    lost.set_exception(error)
                return
            while (notify := pgconn.notifies()) is not None:
                # A UTF8 database refuses bad bytes in a payload; one in another encoding may
                # not, and a decode error here would leave the NOTIFYs after it for the next
                # read: read_announcement skips what it cannot parse.
                self._announced(notify.extra.decode(errors="replace"))

        socket = pgconn.socket
        loop.add_reader(socket, readable)
        try:
            readable()  # what libpq had read already, before the reader was added
            await lost
        finally:
            loop.remove_reader(socket)

    def _announced(self, payload: str) -> None:
        for name, position in read_announcement(payload):
            self._advance(name, position)

    async def _load(self, connection: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        # Positions reached before we listened (the table may not exist yet on a new database).
        try:
            cursor = await connection.execute("SELECT name, position FROM projection_tracking")
        except psycopg.errors.UndefinedTable:
            return
        for name, position in await cursor.fetchall():
            self._advance(str(name), int(str(position)))

    def _advance(self, name: str, position: int) -> None:
        if position <= self._positions[name]:
            return
        self._positions[name] = position
        waiters = self._waiters[name]
        while waiters and waiters[0][0] <= position:
            _, _, waiter = heapq.heappop(waiters)
            if not waiter.done():
                waiter.set_result(True)


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)
