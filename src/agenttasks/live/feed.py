"""A connection's updates: what it missed (read from a history source), then live from the hub.

Positions decide what is new. A feed registers with the hub *before* it reads history, and
passes an update on only if its position is beyond the last one it passed on. An event
committed before the history read is in that read; one committed after it is published after
the registration, so the hub hands it over. Nothing is lost or repeated at the switch from
history to live. A subscriber that fell behind is recovered the same way: the hub drops its
buffer, and the feed reads from the history source again from its last position.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

from agenttasks.bus.messages import TaskEvent
from agenttasks.live.hub import Subscriber

# cursor -> (the subscriber's updates after the cursor, in position order; the cursor to read
# on from, or None when the page reached the end of what was committed when it was read).
HistoryReader = Callable[[int], Awaitable[tuple[list[TaskEvent], int | None]]]


class FeedClosed(RuntimeError):
    """The feed has ended: the server is shutting down, or the connection went away."""


# What SSE and WebSocket clients are told with a `resync` message.
RESYNC_DETAIL = "too much history to replay: read the current state from the query API"


class HistoryTooLong(Exception):
    """More history than one catch-up may replay: the client should resync from the query API.

    Raised by a history reader; the feed then goes on live after `position`, and the caller
    tells its client what was skipped.
    """

    def __init__(self, position: int) -> None:
        super().__init__(f"too much history to replay; live from position {position}")
        self.position = position


class Feed:
    """Updates after position `after`: history first (when `catch_up`), then live; each once."""

    def __init__(
        self,
        subscriber: Subscriber,
        history: HistoryReader | None,
        after: int,
        *,
        catch_up: bool = True,
    ) -> None:
        self.subscriber = subscriber
        self.last = after  # the position of the last update passed on
        self._history = history
        self._cursor = after if history is not None and catch_up else None
        self._pending: deque[TaskEvent] = deque()

    async def next(self, idle_seconds: float) -> TaskEvent | None:
        """The next update; None after `idle_seconds` (or a wake-up) without one.

        Raises FeedClosed when the subscriber was closed.
        """
        waited = False
        while True:
            if self._pending:
                event = self._pending.popleft()
                if self._accept(event):
                    return event
                continue
            if self._cursor is not None and self._history is not None:
                try:
                    page, self._cursor = await self._history(self._cursor)
                except HistoryTooLong as skipped:
                    self._cursor = None
                    self.last = max(self.last, skipped.position)
                    raise
                self._pending.extend(page)
                continue
            subscriber = self.subscriber
            if subscriber.closed:
                raise FeedClosed("the feed was closed")
            if subscriber.lagging:
                self._recover()
                continue
            live = subscriber.pop()
            if live is not None:
                if self._accept(live):
                    return live
                continue
            if waited:
                return None
            await subscriber.wait(idle_seconds)
            waited = True

    def _accept(self, event: TaskEvent) -> bool:
        tasks = self.subscriber.tasks
        if event.position <= self.last or (tasks is not None and event.task_id not in tasks):
            return False
        self.last = event.position
        return True

    def _recover(self) -> None:
        if self._history is None:
            raise FeedClosed("the connection fell too far behind; reconnect with Last-Event-ID")
        self.subscriber.recover()  # buffering again from here; the history covers what went
        self._cursor = self.last
