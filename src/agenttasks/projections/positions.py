"""Waiting until a read model has applied a given position: read-your-writes for the API.

Each API process holds one LISTEN connection on the channel projectors notify after every
commit, and wakes the requests waiting for a position at or below the one announced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

import psycopg

from agenttasks.projections.base import NOTIFY_CHANNEL

log = logging.getLogger(__name__)


class ProjectionWatcher:
    """Knows how far each projection has got, and lets callers wait for a position."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._positions: dict[str, int] = defaultdict(int)
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

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
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self._positions[name] >= position), timeout
                )
            except TimeoutError:
                return False
        return True

    async def _listen(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.database_url, autocommit=True
                ) as connection:
                    await connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    await self._load(connection)
                    self._listening.set()
                    async for notify in connection.notifies():
                        name, _, position = notify.payload.rpartition(":")
                        await self._advance(name, int(position))
            except psycopg.Error as error:
                log.warning("projection watcher: %s; reconnecting", error)
                await asyncio.sleep(0.5)

    async def _load(self, connection: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        # Positions reached before we listened (the table may not exist yet on a new database).
        try:
            cursor = await connection.execute("SELECT name, position FROM projection_tracking")
        except psycopg.errors.UndefinedTable:
            return
        for name, position in await cursor.fetchall():
            await self._advance(str(name), int(str(position)))

    async def _advance(self, name: str, position: int) -> None:
        async with self._changed:
            if position > self._positions[name]:
                self._positions[name] = position
                self._changed.notify_all()
