"""Live feeds for the API's streams: history from the event store, then the hub's updates.

History comes from the event store, not from a read model or NATS: it is written before the
relay publishes, so a read made after registering with the hub covers everything the hub
missed (bus/live.py explains the switch). Payloads go through the relay's own mapper, so a
replayed update is byte for byte what the live one would have been.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from uuid import UUID

from agenttasks.application.publishing import mapper_for
from agenttasks.application.store import EventStore, history
from agenttasks.application.tasks import Actor
from agenttasks.bus.connection import Bus
from agenttasks.bus.hub import Hub, Subscriber
from agenttasks.bus.live import Feed, HistoryReader
from agenttasks.bus.messages import TaskEvent
from agenttasks.domain.task import Task

T = TypeVar("T")
PAGE = 1_000  # notifications read from the log at a time when catching up a user's stream
_TASK_TOPIC = f"{Task.__module__}:{Task.__qualname__}."


class LiveUpdates:
    """Opens feeds of task updates for the streams; one hub per API process."""

    def __init__(self, store: EventStore, hub: Hub | None = None, threads: int = 4) -> None:
        self.store = store
        self.hub = hub or Hub()
        self._mapper = mapper_for(store)
        self._mapper_lock = threading.Lock()  # the mapper's facts cache is not thread-safe
        # History reads get their own threads, so a reconnect storm cannot starve commands.
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="live-history")

    async def start(self, bus: Bus) -> None:
        """Starts the hub on `bus`."""
        await self.hub.start(bus)

    async def stop(self) -> None:
        """Stops the hub (open streams end) and the history threads."""
        await self.hub.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)

    @asynccontextmanager
    async def feed(
        self, actor: Actor, task_id: UUID | None = None, after: int | None = None
    ) -> AsyncIterator[Feed]:
        """One task's updates (or all the actor's tasks') after `after`.

        Without `after`, what is committed from now on. Admins' all-tasks feeds carry every
        task. The caller checks that the task is visible.
        """
        user = None if actor.is_admin else actor.user_id
        subscriber = self.hub.subscribe(user, None if task_id is None else [str(task_id)])
        try:
            # Registered first: anything committed after this read reaches the subscriber.
            start = after if after is not None else await self._run(self._newest)
            yield Feed(subscriber, self.reader_for(subscriber), start, catch_up=after is not None)
        finally:
            self.hub.unsubscribe(subscriber)

    def reader_for(self, subscriber: Subscriber) -> HistoryReader:
        """Reads what `subscriber` wants from the event store, for its current selection."""

        async def read(after: int) -> tuple[list[TaskEvent], int | None]:
            if subscriber.tasks is None:
                return await self._run(self._log_page, subscriber.user, after)
            events: list[TaskEvent] = []
            for task_id in list(subscriber.tasks):
                events += await self.task_history(UUID(task_id), after)
            events.sort(key=lambda event: event.position)
            return events, None

        return read

    async def task_history(self, task_id: UUID, after: int) -> list[TaskEvent]:
        """The task's updates with position > `after`, from the event store."""
        return await self._run(self._task_history, task_id, after)

    def _newest(self) -> int:
        return self.store.recorder.max_notification_id() or 0

    def _task_history(self, task_id: UUID, after: int) -> list[TaskEvent]:
        items = [item for item in history(self.store, task_id) if item.position > after]
        return [e for item in items if (e := self._map(item.event, item.position)) is not None]

    def _log_page(self, user: str | None, after: int) -> tuple[list[TaskEvent], int | None]:
        notifications = self.store.recorder.select_notifications(
            start=after, limit=PAGE, inclusive_of_start=False
        )
        events = []
        for notification in notifications:
            if not notification.topic.startswith(_TASK_TOPIC):
                continue
            event = self._map(self.store.mapper.to_domain_event(notification), notification.id)
            if event is not None and (user is None or event.user == user):
                events.append(event)
        more = len(notifications) == PAGE
        return events, (notifications[-1].id if more else None)

    def _map(self, event: Any, position: int) -> TaskEvent | None:
        with self._mapper_lock:
            mapped = self._mapper.map(event, position)
        return mapped if isinstance(mapped, TaskEvent) else None

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: function(*args))
