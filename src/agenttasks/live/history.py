"""History and catch-up for the live streams, read from the event store.

History comes from the event store, not from a read model or NATS: it is written before the
relay publishes, so a read made after registering with the hub covers everything the hub
missed (live/feed.py explains the switch). Payloads go through the relay's own mapper, so a
replayed update is byte for byte what the live one would have been.

A catch-up reads only its own selection through indexes (application/user_log.py), in pages,
up to the newest position when it began; one that would replay more than
`max_catch_up_events` is not read at all: the client is told to resync from the query API.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from uuid import UUID

from agenttasks.application.bus_payloads import BusEventMapper
from agenttasks.application.store import PositionedEvent
from agenttasks.application.user_log import PAGE, Selection, UserLog
from agenttasks.bus.messages import TaskEvent
from agenttasks.live.feed import HistoryReader, HistoryTooLong
from agenttasks.live.hub import Subscriber

T = TypeVar("T")


class History:
    """Reads a subscriber's updates after a position from the event store, in pages."""

    def __init__(
        self,
        log: UserLog,
        mapper: BusEventMapper,
        executor: ThreadPoolExecutor,
        *,
        max_catch_up_events: int,
    ) -> None:
        self.log = log
        self.max_catch_up_events = max_catch_up_events
        self._mapper = mapper  # the relay's own kind, so replayed payloads match live ones
        self._mapper_lock = threading.Lock()  # the mapper's facts cache is not thread-safe
        # History reads get their own threads, so a reconnect storm cannot starve commands.
        self._executor = executor

    async def start(self) -> None:
        """Creates the owner index if needed."""
        await self._run(self.log.ensure_tables)

    def stop(self) -> None:
        """Stops the history threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def newest(self) -> int:
        """The newest stored position: where a feed without a resume point starts."""
        return await self._run(self.log.newest)

    def reader_for(self, subscriber: Subscriber) -> HistoryReader:
        """Reads what `subscriber` wants from the event store, for its current selection."""
        upper: list[int] = []  # the catch-up under way reads up to here

        async def read(after: int) -> tuple[list[TaskEvent], int | None]:
            tasks = subscriber.tasks
            selection = Selection(
                subscriber.user, None if tasks is None else [UUID(t) for t in tasks]
            )
            if not upper:
                upper.append(await self._run(self._bounded_upper, selection, after))
            events, more = await self._page(selection, after, upper[0])
            if more is None:
                upper.clear()  # this catch-up is over; the next one (a lagging feed) starts anew
            return events, more

        return read

    async def task_history(self, task_id: UUID, after: int) -> list[TaskEvent]:
        """The task's updates with position > `after`; HistoryTooLong beyond the cap."""
        selection = Selection(tasks=[task_id])
        upper = await self._run(self._bounded_upper, selection, after)
        events: list[TaskEvent] = []
        more: int | None = after
        while more is not None:
            page, more = await self._page(selection, more, upper)
            events += page
        return events

    async def _page(
        self, selection: Selection, after: int, upper: int
    ) -> tuple[list[TaskEvent], int | None]:
        items, more = await self._run(self.log.page, selection, after, upper, PAGE)
        return self._map_all(items), more

    def _bounded_upper(self, selection: Selection, after: int) -> int:
        # Read after the hub registration: what lies beyond it reaches the subscriber live.
        upper = self.log.newest()
        limit = self.max_catch_up_events
        if self.log.count(selection, after, upper, limit + 1) > limit:
            raise HistoryTooLong(upper)
        return upper

    def _map_all(self, items: list[PositionedEvent]) -> list[TaskEvent]:
        return [e for item in items if (e := self._map(item.event, item.position)) is not None]

    def _map(self, event: Any, position: int) -> TaskEvent | None:
        with self._mapper_lock:
            mapped = self._mapper.map(event, position)
        return mapped if isinstance(mapped, TaskEvent) else None

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: function(*args))
