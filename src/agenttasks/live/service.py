"""LiveUpdates: one per API process, it opens the feeds the SSE and WebSocket adapters write.

It holds the hub (live/hub.py), the store history (live/history.py) and the per-user stream
cap (live/slots.py); a feed (live/feed.py) joins the first two without a gap or a repeat.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID

from agenttasks.application.tasks import Actor
from agenttasks.live.feed import Feed
from agenttasks.live.history import History
from agenttasks.live.hub import Hub
from agenttasks.live.slots import StreamSlots


class LiveUpdates:
    """Opens feeds of task updates for the streams."""

    def __init__(self, hub: Hub, history: History, slots: StreamSlots) -> None:
        self.hub = hub
        self.history = history
        self.slots = slots

    @property
    def max_catch_up_events(self) -> int:
        """The most updates one catch-up replays (beyond: a resync message)."""
        return self.history.max_catch_up_events

    @max_catch_up_events.setter
    def max_catch_up_events(self, value: int) -> None:
        self.history.max_catch_up_events = value

    async def start(self) -> None:
        """Creates the owner index if needed and starts the hub."""
        await self.history.start()
        await self.hub.start()

    async def stop(self) -> None:
        """Stops the hub (open streams end) and the history threads."""
        await self.hub.stop()
        self.history.stop()

    @asynccontextmanager
    async def feed(
        self, actor: Actor, task_id: UUID | None = None, after: int | None = None
    ) -> AsyncIterator[Feed]:
        """One task's updates (or all the actor's tasks') after `after`.

        Without `after`, what is committed from now on. Admins' all-tasks feeds carry every
        task. The caller checks that the task is visible. A catch-up longer than
        `max_catch_up_events` makes the feed raise HistoryTooLong once, then go on live.
        """
        user = None if actor.is_admin else actor.user_id
        subscriber = self.hub.subscribe(user, None if task_id is None else [str(task_id)])
        try:
            # Registered and listened for first: anything committed after this read reaches
            # the subscriber (the hub subscribes to NATS only while a feed is open).
            await self.hub.listen()
            start = after if after is not None else await self.history.newest()
            history = self.history.reader_for(subscriber)
            yield Feed(subscriber, history, start, catch_up=after is not None)
        finally:
            self.hub.unsubscribe(subscriber)
