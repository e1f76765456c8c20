"""The in-memory fan-out of task events to the connections of one API process.

Events come from one source per process (bus/live_events.py: one NATS subscription, so a
thousand browsers do not mean a thousand JetStream consumers). The source is subscribed only
while some stream is open: with none, the process receives no task event at all (it had cost
16-22% of the API's Python time under a create load, docs/performance.md). The hub hands each
event to the subscribers that want it, found through indexes by task and by user, so an event
costs work only for its own watchers. Each subscriber has a bounded buffer; one that overflows
is marked lagging (its feed re-reads what it missed from the event store) instead of growing
memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol

from agenttasks.bus.messages import TaskEvent

log = logging.getLogger(__name__)

# How long a client is asked to wait before it tries a refused stream again, and how long a
# stream's opening waits for NATS to answer the subscription (healthy: milliseconds).
RETRY_SECONDS = 5
LISTEN_TIMEOUT_SECONDS = 3.0


class LiveUnavailable(RuntimeError):
    """The live events could not be subscribed to (NATS down or slow): a stream cannot open."""


BUFFER_LIMIT = 1_000  # updates a connection may have waiting before it counts as lagging
# The source stays subscribed this long after the last stream closes, so a client that
# reconnects or moves to another page does not re-create the consumer each time.
LINGER_SECONDS = 5.0


class EventSource(Protocol):
    """Where the hub's events come from: each task event published after `start`, once.

    A source may be started again after `stop`.
    """

    async def start(self, deliver: Callable[[TaskEvent], None]) -> None:
        """Begins calling `deliver` with each new event, in order."""
        ...

    async def stop(self) -> None:
        """Stops delivering."""
        ...


class Subscriber:
    """One connection's share of the hub: which tasks it wants and a bounded buffer of updates.

    `tasks` None means every task of `user` (user None: every task at all); a set means
    exactly those tasks.
    """

    __slots__ = ("_buffer", "_limit", "_waiter", "closed", "lagging", "tasks", "user")

    def __init__(self, user: str | None, tasks: set[str] | None, limit: int) -> None:
        self.user = user
        self.tasks = tasks
        self.lagging = False
        self.closed = False
        self._limit = limit
        self._buffer: deque[TaskEvent] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def push(self, event: TaskEvent) -> None:
        """Buffers `event`; past the limit drops the buffer and marks the subscriber lagging."""
        if self.closed or self.lagging:
            return
        if len(self._buffer) >= self._limit:
            self._buffer.clear()
            self.lagging = True
        else:
            self._buffer.append(event)
        self.wake()

    def pop(self) -> TaskEvent | None:
        """The oldest buffered update, or None."""
        return self._buffer.popleft() if self._buffer else None

    def recover(self) -> None:
        """Clears the lagging mark: updates are buffered again from now on."""
        self._buffer.clear()
        self.lagging = False

    def close(self) -> None:
        """Stops buffering and wakes whoever waits."""
        self.closed = True
        self._buffer.clear()
        self.wake()

    def wake(self) -> None:
        """Ends a pending `wait` (new update, lagging, closed, or a message for the owner)."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self, idle_seconds: float) -> None:
        """Returns when something is buffered, on `wake`, or after `idle_seconds`."""
        if self._buffer or self.closed or self.lagging:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(idle_seconds):
                await self._waiter
        except TimeoutError:
            pass
        finally:
            self._waiter = None


class Hub:
    """Fans out every task event this process receives to the subscribers that want it.

    The source is started by the first `listen` and stopped `linger` seconds after the last
    subscriber left. Without a source, events arrive only through `publish` (unit tests).
    """

    def __init__(
        self,
        source: EventSource | None = None,
        limit: int = BUFFER_LIMIT,
        linger: float = LINGER_SECONDS,
    ) -> None:
        self.limit = limit
        self.linger = linger
        self.position = 0  # the last event's position seen live
        self._source = source
        self._started = False
        self._listening = False  # the source is started
        self._switch = asyncio.Lock()  # one start or stop of the source at a time
        self._idle: asyncio.TimerHandle | None = None  # the pending stop after the last leaves
        self._quieting: asyncio.Task[None] | None = None
        self._everything: set[Subscriber] = set()
        self._by_user: dict[str, set[Subscriber]] = {}
        self._by_task: dict[str, set[Subscriber]] = {}
        self._subscribers: set[Subscriber] = set()

    @property
    def subscriber_count(self) -> int:
        """How many subscribers are registered."""
        return len(self._subscribers)

    def index_size(self) -> int:
        """How many index entries exist (each watched user or task has one): for leak checks."""
        return len(self._everything) + len(self._by_user) + len(self._by_task)

    @property
    def ready(self) -> bool:
        """Whether feeds may open (the source itself is subscribed on demand)."""
        return self._source is None or self._started

    @property
    def listening(self) -> bool:
        """Whether the source is subscribed (some stream is open, or closed under `linger` ago)."""
        return self._listening

    async def start(self) -> None:
        """Lets feeds open; the source is subscribed when the first one does (`listen`)."""
        self._started = True

    async def listen(self) -> None:
        """Returns once every event published from now on reaches the registered subscribers.

        A feed calls it after `subscribe` and before it reads history (live/feed.py).
        """
        if self._source is None or not self._started:
            return
        self._cancel_idle()
        if self._listening:
            return
        async with self._switch:
            if not self._listening and self._started:
                try:
                    async with asyncio.timeout(LISTEN_TIMEOUT_SECONDS):
                        await self._source.start(self.publish)
                except Exception as error:  # the bus's errors, whatever nats-py raised
                    log.warning("live updates: cannot subscribe to NATS (%s)", type(error).__name__)
                    raise LiveUnavailable(
                        f"live updates are unavailable just now; try again in {RETRY_SECONDS} s"
                    ) from None
                self._listening = True

    async def stop(self) -> None:
        """Stops the source and closes every subscriber (their streams end)."""
        self._started = False
        self._cancel_idle()
        for subscriber in list(self._subscribers):
            self.unsubscribe(subscriber)
        if self._source is not None:
            async with self._switch:
                if self._listening:
                    self._listening = False
                    await self._source.stop()

    def publish(self, event: TaskEvent) -> None:
        """Hands `event` to every subscriber that wants it."""
        self.position = event.position
        for subscriber in self._everything:
            subscriber.push(event)
        for subscriber in self._by_user.get(event.user, ()):
            subscriber.push(event)
        for subscriber in self._by_task.get(event.task_id, ()):
            subscriber.push(event)

    def subscribe(self, user: str | None, tasks: Iterable[str] | None = None) -> Subscriber:
        """A new subscriber to `tasks`, or to all of `user`'s tasks (user None: all tasks)."""
        subscriber = Subscriber(user, None if tasks is None else set(tasks), self.limit)
        self._index(subscriber)
        self._subscribers.add(subscriber)
        return subscriber

    def follow(self, subscriber: Subscriber, task_id: str) -> None:
        """Adds a task; a subscriber that followed all of its user's tasks now follows only it."""
        if subscriber not in self._subscribers:
            return
        if subscriber.tasks is None:
            self._unindex(subscriber)
            subscriber.tasks = set()
        subscriber.tasks.add(task_id)
        self._by_task.setdefault(task_id, set()).add(subscriber)

    def unfollow(self, subscriber: Subscriber, task_id: str) -> None:
        """Removes a task from a subscriber that follows chosen tasks."""
        if subscriber.tasks is not None and task_id in subscriber.tasks:
            subscriber.tasks.discard(task_id)
            _discard(self._by_task, task_id, subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forgets `subscriber`; safe to call twice."""
        if subscriber in self._subscribers:
            self._subscribers.discard(subscriber)
            self._unindex(subscriber)
            if not self._subscribers and self._listening and self._started:
                self._idle = asyncio.get_running_loop().call_later(self.linger, self._go_quiet)
        subscriber.close()

    def _cancel_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _go_quiet(self) -> None:
        self._idle = None
        self._quieting = asyncio.get_running_loop().create_task(self._quiet())

    async def _quiet(self) -> None:
        async with self._switch:
            # A feed that registered meanwhile keeps the source; one that comes after the stop
            # starts it again (`listen` waits for this lock).
            if self._subscribers or not self._listening or self._source is None:
                return
            self._listening = False
            try:
                await self._source.stop()
            except Exception:  # the connection may be gone: nothing to undo
                log.warning("live hub: stopping the event source failed", exc_info=True)

    def _index(self, subscriber: Subscriber) -> None:
        if subscriber.tasks is not None:
            for task_id in subscriber.tasks:
                self._by_task.setdefault(task_id, set()).add(subscriber)
        elif subscriber.user is None:
            self._everything.add(subscriber)
        else:
            self._by_user.setdefault(subscriber.user, set()).add(subscriber)

    def _unindex(self, subscriber: Subscriber) -> None:
        if subscriber.tasks is not None:
            for task_id in subscriber.tasks:
                _discard(self._by_task, task_id, subscriber)
        elif subscriber.user is None:
            self._everything.discard(subscriber)
        else:
            _discard(self._by_user, subscriber.user, subscriber)


def _discard(index: dict[str, set[Subscriber]], key: str, subscriber: Subscriber) -> None:
    group = index.get(key)
    if group is not None:
        group.discard(subscriber)
        if not group:
            del index[key]  # an entry per watched task must not outlive its watchers
