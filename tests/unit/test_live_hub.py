"""The hub's fan-out and the feed's switch from history to live, without NATS or Postgres."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agenttasks.bus.messages import TaskEvent
from agenttasks.live.feed import Feed, FeedClosed, HistoryReader
from agenttasks.live.hub import Hub, Subscriber


def event(position: int, task_id: str = "t1", user: str = "alice") -> TaskEvent:
    return TaskEvent(
        position=position,
        task_id=task_id,
        type="progress",
        version=position,
        timestamp=datetime.now(UTC),
        user=user,
        task_type="summary",
        priority="normal",
        update_type="progress",
        status="running",
        progress=position,
        message="",
        data={},
    )


def store_reader(stored: list[TaskEvent], page: int = 2) -> HistoryReader:
    """Reads `stored` (the event store, as it is when read) in pages."""

    async def read(after: int) -> tuple[list[TaskEvent], int | None]:
        newer = [e for e in stored if e.position > after]
        if len(newer) > page:
            return newer[:page], newer[page - 1].position
        return newer, None

    return read


async def drain(feed: Feed) -> list[int]:
    positions = []
    while (update := await feed.next(0.01)) is not None:
        positions.append(update.position)
    return positions


def buffered(subscriber: Subscriber) -> list[int]:
    positions = []
    while (update := subscriber.pop()) is not None:
        positions.append(update.position)
    return positions


def test_each_event_reaches_its_users_its_tasks_and_the_admins_subscribers_only() -> None:
    hub = Hub()
    alice, bob = hub.subscribe("alice"), hub.subscribe("bob")
    watcher, admin = hub.subscribe(None, ["t1"]), hub.subscribe(None)
    hub.publish(event(1, "t1", "alice"))
    hub.publish(event(2, "t2", "alice"))
    hub.publish(event(3, "t3", "bob"))
    assert buffered(alice) == [1, 2]
    assert buffered(bob) == [3]
    assert buffered(watcher) == [1]
    assert buffered(admin) == [1, 2, 3]


def test_following_a_task_narrows_a_subscriber_and_unsubscribing_empties_the_indexes() -> None:
    hub = Hub()
    subscriber = hub.subscribe("alice")
    hub.follow(subscriber, "t2")
    hub.publish(event(1, "t1"))
    hub.publish(event(2, "t2"))
    assert buffered(subscriber) == [2]
    hub.unfollow(subscriber, "t2")
    hub.publish(event(3, "t2"))
    assert buffered(subscriber) == []
    hub.unsubscribe(subscriber)
    hub.unsubscribe(subscriber)  # twice is harmless
    assert hub.subscriber_count == 0
    assert hub.index_size() == 0


async def test_history_then_live_gives_each_update_once_in_order_where_they_overlap() -> None:
    hub = Hub()
    subscriber = hub.subscribe("alice")
    for position in (4, 5, 6):  # published while the history was being read
        hub.publish(event(position))
    stored = [event(p) for p in (1, 2, 4, 5)]  # 3 was a failed insert: positions have gaps
    feed = Feed(subscriber, store_reader(stored), 0)
    hub.publish(event(7))
    assert await drain(feed) == [1, 2, 4, 5, 6, 7]


async def test_a_lagging_subscriber_recovers_what_it_missed_from_the_history() -> None:
    hub = Hub(limit=3)
    subscriber = hub.subscribe("alice")
    stored = [event(p) for p in range(1, 11)]
    feed = Feed(subscriber, store_reader(stored), 0, catch_up=False)
    for update in stored:
        hub.publish(update)
    assert subscriber.lagging
    assert await drain(feed) == list(range(1, 11))
    hub.publish(event(11))
    assert await drain(feed) == [11]


async def test_a_closed_subscriber_ends_its_feed() -> None:
    hub = Hub()
    subscriber = hub.subscribe("alice")
    feed = Feed(subscriber, None, 0)
    hub.unsubscribe(subscriber)
    with pytest.raises(FeedClosed):
        await feed.next(0.01)


async def test_a_lagging_feed_without_history_ends_rather_than_grow() -> None:
    hub = Hub(limit=1)
    subscriber = hub.subscribe("alice")
    feed = Feed(subscriber, None, 0)
    hub.publish(event(1))
    hub.publish(event(2))
    with pytest.raises(FeedClosed):
        await feed.next(0.01)
