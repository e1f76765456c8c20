"""One subscription per API process on every task event, fanned out in memory to connections.

A thousand browsers must not mean a thousand JetStream consumers: the hub holds one ordered
consumer on `agenttasks.events.task.>` and hands each event to the subscribers that want it,
found through indexes by task and by user, so an event costs work only for its own watchers.
Each subscriber has a bounded buffer; one that overflows is marked lagging (its feed re-reads
what it missed from the event store) instead of growing memory.

The ordered consumer starts after the stream's last message and tracks stream sequences, so a
reset (after a reconnect or a missed heartbeat) neither skips nor repeats an event here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterable
from typing import Any

import msgspec
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from agenttasks.bus.connection import Bus
from agenttasks.bus.messages import STREAM, TaskEvent, decode, task_subject

log = logging.getLogger(__name__)

BUFFER_LIMIT = 1_000  # updates a connection may have waiting before it counts as lagging
RETRY_SECONDS = 0.5


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
    """Fans out every task event this process receives to the subscribers that want it."""

    def __init__(self, limit: int = BUFFER_LIMIT) -> None:
        self.limit = limit
        self.position = 0  # the last event's position seen live
        self._everything: set[Subscriber] = set()
        self._by_user: dict[str, set[Subscriber]] = {}
        self._by_task: dict[str, set[Subscriber]] = {}
        self._subscribers: set[Subscriber] = set()
        self._sequence = 0  # the last stream sequence handed out: resets never repeat one
        self._subscription: Any = None
        self._starter: asyncio.Task[None] | None = None

    @property
    def subscriber_count(self) -> int:
        """How many subscribers are registered."""
        return len(self._subscribers)

    def index_size(self) -> int:
        """How many index entries exist (each watched user or task has one): for leak checks."""
        return len(self._everything) + len(self._by_user) + len(self._by_task)

    @property
    def ready(self) -> bool:
        """Whether the hub's subscription exists (it waits for the stream if there is none)."""
        return self._subscription is not None

    async def start(self, bus: Bus) -> None:
        """Subscribes to every task event published from now on (waits for the stream)."""
        try:
            last = (await bus.js.stream_info(STREAM)).state.last_seq
        except NotFoundError:
            # The relay creates the stream; until it does nothing can have been published, so
            # everything it will hold is news.
            self._starter = asyncio.create_task(self._subscribe_when_ready(bus))
        else:
            await self._subscribe(bus, last)

    async def _subscribe_when_ready(self, bus: Bus) -> None:
        while True:
            await asyncio.sleep(RETRY_SECONDS)
            with contextlib.suppress(NotFoundError):
                await self._subscribe(bus, 0)
                return

    async def _subscribe(self, bus: Bus, last: int) -> None:
        self._sequence = last
        self._subscription = await bus.js.subscribe(
            task_subject(),
            stream=STREAM,
            ordered_consumer=True,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=last + 1
            ),
            cb=self._receive,
        )

    async def stop(self) -> None:
        """Unsubscribes and closes every subscriber (their streams end)."""
        if self._starter is not None:
            self._starter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starter
        if self._subscription is not None:
            with contextlib.suppress(Exception):  # the connection may be gone already
                await self._subscription.unsubscribe()
            self._subscription = None
        for subscriber in list(self._subscribers):
            self.unsubscribe(subscriber)

    async def _receive(self, message: Any) -> None:
        sequence = message.metadata.sequence.stream
        if sequence <= self._sequence:
            return
        self._sequence = sequence
        try:
            event = decode(message.data)
        except msgspec.DecodeError:
            log.warning("hub: undecodable message at stream sequence %s skipped", sequence)
            return
        if isinstance(event, TaskEvent):
            self.publish(event)

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
        subscriber.close()

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
