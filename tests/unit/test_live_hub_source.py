"""The hub subscribes its source only while a stream is open (issue 17: PERF5)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from agenttasks.bus.messages import TaskEvent
from agenttasks.live.hub import Hub
from tests.waiting import wait_until


class CountingSource:
    """An EventSource of our own interface that records its starts and stops."""

    def __init__(self) -> None:
        self.starts = 0
        self.stops = 0
        self.deliver: Callable[[TaskEvent], None] | None = None

    @property
    def active(self) -> bool:
        return self.starts > self.stops

    async def start(self, deliver: Callable[[TaskEvent], None]) -> None:
        self.starts += 1
        self.deliver = deliver

    async def stop(self) -> None:
        self.stops += 1
        self.deliver = None


def event(position: int) -> TaskEvent:
    return TaskEvent(
        position=position, task_id="t1", type="progress", version=position,
        timestamp=datetime.now(UTC), user="alice", task_type="summary", priority="normal",
        update_type="progress", status="running", progress=position, message="", data={},
    )  # fmt: skip


async def test_the_source_starts_with_the_first_stream_and_stops_after_the_last() -> None:
    source = CountingSource()
    hub = Hub(source, linger=0.01)
    await hub.start()
    assert source.starts == 0, "no stream open: nothing received"

    first = hub.subscribe("alice")
    await hub.listen()
    second = hub.subscribe(None)
    await hub.listen()
    assert (source.starts, hub.listening) == (1, True), "one source for every stream"
    assert source.deliver is not None
    update = event(7)
    source.deliver(update)
    assert first.pop() is update
    assert second.pop() is update

    hub.unsubscribe(first)
    hub.unsubscribe(second)
    await wait_until(lambda: not source.active)
    assert hub.listening is False

    again = hub.subscribe("alice", ["t1"])
    await hub.listen()
    assert (source.starts, hub.listening) == (2, True)
    await hub.stop()
    assert again.closed
    assert not source.active


async def test_a_stream_opened_within_the_linger_keeps_the_source() -> None:
    source = CountingSource()
    hub = Hub(source, linger=60)
    await hub.start()
    hub.unsubscribe(hub.subscribe("alice"))  # never listened: nothing to stop
    first = hub.subscribe("alice")
    await hub.listen()
    hub.unsubscribe(first)
    hub.subscribe("bob")
    await hub.listen()
    assert (source.starts, source.stops, hub.listening) == (1, 0, True)
    await hub.stop()
    assert (source.stops, hub.listening) == (1, False)
