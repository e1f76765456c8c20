"""What lets the deliverer pass over a task ending nobody asked for, without the database.

Most task endings go nowhere: their owner has no endpoint and the task no `webhook_url`. Two
small caches tell the deliverer so without a store read or a transaction per event:

- `TaskUrls`: each task's `webhook_url` as its Created message carried it (the deliverer takes
  Created messages too), for the most recent tasks. A task it has not seen (a restart, another
  deliverer took the Created, an old task) is looked up in the store as before.
- `EndpointOwners`: the owners with an enabled endpoint, read once and again whenever
  `webhook_endpoints` changes (a trigger NOTIFYs on insert, delete and status changes; the
  deliverer LISTENs). While it is not listening (starting, the connection lost) or a change is
  being read, it knows nothing and every event takes the database path (docs/webhooks.md,
  "How fresh").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psycopg

from agenttasks.outage import Outage
from agenttasks.webhooks.store import CHANGES_CHANNEL as CHANNEL

log = logging.getLogger(__name__)


class TaskUrls:
    """The `webhook_url` and owner of the last `capacity` tasks whose Created message was seen."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        # insertion order: the oldest goes first. A task's owner and URL never change.
        self._urls: dict[str, tuple[str | None, str | None]] = {}

    def learn(self, task_id: str, url: str | None, owner: str | None = None) -> None:
        """Remembers a task's URL (None: it has none), forgetting the oldest beyond capacity."""
        self._urls.pop(task_id, None)
        self._urls[task_id] = (url, owner)
        while len(self._urls) > self.capacity:
            del self._urls[next(iter(self._urls))]

    def get(self, task_id: str) -> tuple[bool, str | None]:
        """(known, url): known False means the store must be asked."""
        entry = self._urls.get(task_id)
        return (False, None) if entry is None else (True, entry[0])

    def owner_without_url(self, task_id: str) -> str | None:
        """The owner of a task known to have no `webhook_url` (None: unknown, or it has one)."""
        entry = self._urls.get(task_id)
        return entry[1] if entry is not None and entry[0] is None else None

    def __len__(self) -> int:
        return len(self._urls)


class EndpointOwners:
    """The owners with an enabled endpoint, kept current through LISTEN/NOTIFY."""

    def __init__(self, database_url: str, capacity: int) -> None:
        self.database_url = database_url
        self.capacity = capacity  # more owners than this (or 0): not cached, the database
        self._owners: frozenset[str] | None = None  # None: not known now
        self._outage = Outage("webhooks: endpoint owners LISTEN", log)
        self.refreshes = 0  # reads of the owner set (tests)

    def has_none(self, owner: str) -> bool:
        """True only when `owner` certainly has no enabled endpoint now."""
        return self._owners is not None and owner not in self._owners

    async def run(self, stop: asyncio.Event) -> None:
        """Listens for endpoint changes until `stop`, reconnecting when the connection drops."""
        while not stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.database_url, autocommit=True
                ) as connection:
                    await connection.execute(f"LISTEN {CHANNEL}")
                    await self._read(connection)  # after LISTEN: no change falls in between
                    self._outage.restored()
                    listening = asyncio.create_task(self._follow(connection))
                    stopping = asyncio.create_task(stop.wait())
                    try:
                        await asyncio.wait(
                            {listening, stopping}, return_when=asyncio.FIRST_COMPLETED
                        )
                    finally:
                        stopping.cancel()
                        listening.cancel()
                    if listening.done() and not listening.cancelled():
                        listening.result()  # its error: reconnect below
            except psycopg.Error as error:
                self._owners = None
                delay = self._outage.failed(error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
            finally:
                self._owners = None

    async def _follow(self, connection: psycopg.AsyncConnection[Any]) -> None:
        while True:
            # notifies() holds the connection while it runs: the read waits for it to end
            # (what arrives in between is kept in psycopg's backlog and comes next).
            async for _ in connection.notifies(stop_after=1):
                pass
            self._owners = None  # stale from now until read again
            await self._read(connection)

    async def _read(self, connection: psycopg.AsyncConnection[Any]) -> None:
        cursor = await connection.execute(
            "SELECT DISTINCT owner FROM webhook_endpoints WHERE status = 'enabled' LIMIT %s",
            (self.capacity + 1,),
        )
        owners = frozenset(str(row[0]) for row in await cursor.fetchall())
        self.refreshes += 1
        self._owners = owners if 0 < self.capacity >= len(owners) else None  # 0: off
