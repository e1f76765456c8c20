"""The relay publishes from the append's NOTIFY payload, and reads the log whenever it must.

The payload carries the stored rows (store.py), so a wake-up needs no read; anything but a dense
continuation of what the relay published (a payload too large to carry, a gap in the ids, a
payload that is not ours) must still end with every event published once, in order.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from agenttasks import relay as relay_module
from agenttasks.application.store import (
    EventStore,
    OrderedAppendRecorder,
    append_after_async,
    close,
    open_event_store,
    read_log,
)
from agenttasks.application.tasks import Actor, NewTask
from agenttasks.bootstrap import task_commands
from agenttasks.domain.task import Task
from agenttasks.relay import Relay
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.settings import Settings
from tests.integration.test_relay import running, stored_positions, stream_contents
from tests.waiting import wait_until

ALICE = Actor("alice")


@pytest.fixture
def store(database_url: str) -> Iterator[EventStore]:
    store = open_event_store(Settings(database_url=database_url).eventsourcing_env())
    yield store
    close(store)


def counting_reads(relay: Relay) -> list[int]:
    """Records the position of every read of the log the relay makes (it still makes them)."""
    reads: list[int] = []
    read = relay._read

    async def counted(session: Any, after: int) -> Any:
        reads.append(after)
        return await read(session, after)

    relay._read = counted  # type: ignore[method-assign]
    return reads


async def published(relay: Relay, position: int) -> None:
    await wait_until(lambda: relay.published_position >= position, within=10.0)


def create(store: EventStore, title: str, content: str = "text") -> int:
    written = task_commands(store).create(ALICE, NewTask(title, "summary", {"content": content}))
    assert written.position is not None
    return written.position


async def test_a_wake_up_publishes_the_notified_events_without_reading_the_log(
    store: EventStore,
    database_url: str,
    nats_server: EmbeddedNats,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(relay_module, "POLL_SECONDS", 60.0)  # no poll: only notifications
    async with running(store, database_url, nats_server) as handle:
        relay = handle.relay
        reads = counting_reads(relay)
        await wait_until(lambda: relay.is_leader and len(reads) > 0)
        await wait_until(lambda: relay._waiting)
        first_reads = len(reads)
        for index in range(5):  # one at a time: each is the next one after the last published
            position = await asyncio.to_thread(create, store, f"one-{index}")
            await published(relay, position)
        assert len(reads) == first_reads, "a notified event was read back from the log"
        assert relay.carried == 5
        writers = [
            threading.Thread(target=lambda n=n: [create(store, f"w{n}-{i}") for i in range(10)])
            for n in range(4)
        ]  # concurrent commits: several notifications per wake-up, some while publishing
        for writer in writers:
            writer.start()
        for writer in writers:
            await asyncio.to_thread(writer.join)
        expected = stored_positions(store)
        await wait_until(lambda: relay.published_position >= expected[-1], within=10.0)
        # A stop ends the minute-long wait at once (the leadership's one watcher).
        await asyncio.wait_for(handle.stopped(), 5.0)
    assert [e.position for e in await stream_contents(nats_server)] == expected


async def test_a_payload_it_cannot_take_sends_the_relay_to_the_read(
    store: EventStore,
    database_url: str,
    nats_server: EmbeddedNats,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(relay_module, "POLL_SECONDS", 60.0)
    recorder: Any = store.recorder
    async with running(store, database_url, nats_server) as handle:
        relay = handle.relay
        reads = counting_reads(relay)
        await wait_until(lambda: relay.is_leader and relay._waiting)

        async def published_after_a_read(title: str, content: str = "text") -> None:
            before = len(reads)  # counted before the commit: the relay may read at once
            position = await asyncio.to_thread(create, store, title, content)
            await wait_until(lambda: relay.published_position >= position, within=10.0)
            assert len(reads) > before, "published without the read it needed"

        # Over Postgres's 8,000 bytes: the NOTIFY comes without rows.
        await published_after_a_read("big", "x" * 9000)
        # A gap in the ids (what a failed insert leaves): the next payload does not continue.
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'notification_id'))",
                (recorder.events_table_name,),
            )
        await published_after_a_read("after-gap")
        # A notification on the channel that is not an append's: read, nothing published twice.
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute("SELECT pg_notify(%s, %s)", (recorder.channel_name, "[[1, 2, 3]]"))
        await wait_until(lambda: len(reads) > 3 and relay._waiting, within=10.0)
        carried, read = relay.carried, len(reads)
        position = await asyncio.to_thread(create, store, "then-carried")
        await wait_until(lambda: relay.published_position >= position, within=10.0)
        assert (relay.carried, len(reads)) == (carried + 1, read)  # back on the payloads
    expected = stored_positions(store)
    assert [e.position for e in await stream_contents(nats_server)] == expected


async def test_a_guarded_appends_notification_carries_its_rows_too(
    store: EventStore,
    database_url: str,
    nats_server: EmbeddedNats,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The worker's Started goes through the guarded append (workers/loop_start.py).
    monkeypatch.setattr(relay_module, "POLL_SECONDS", 60.0)
    recorder = store.recorder
    assert isinstance(recorder, OrderedAppendRecorder)
    position = await asyncio.to_thread(create, store, "to-start")
    task_id = (await task_at(store, position)).id
    async with running(store, database_url, nats_server) as handle:
        relay = handle.relay
        reads = counting_reads(relay)
        await wait_until(lambda: relay.published_position >= position and relay._waiting)
        read = len(reads)
        task: Task = store.repository.get(task_id)
        task.start(1, "w")
        started = [store.mapper.to_stored_event(e) for e in task.collect_events()]
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as db:
            [stored] = await append_after_async(db, recorder, started, {task_id: position})
        assert stored is not None
        await wait_until(lambda: relay.published_position >= stored, within=10.0)
        assert (relay.carried, len(reads)) == (1, read)
    assert [e.type for e in await stream_contents(nats_server)] == ["created", "started"]


async def task_at(store: EventStore, position: int) -> Task:
    def find() -> Task:
        [item] = [i for i in read_log(store) if i.position == position]
        task: Task = store.repository.get(item.event.originator_id)
        return task

    return await asyncio.to_thread(find)
