"""The relay puts every stored event into the stream once and in order, whatever restarts."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agenttasks.application.store import EventStore, close, open_event_store, read_log
from agenttasks.application.tasks import Actor, NewTask
from agenttasks.bootstrap import relay as relay_for
from agenttasks.bootstrap import task_commands
from agenttasks.bus.connection import Bus, connect
from agenttasks.bus.messages import STREAM, TaskEvent, decode, subject_of
from agenttasks.relay import Relay
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.servers.postgres import create_database, start_postgres
from agenttasks.settings import Settings
from tests.waiting import wait_until

ALICE = Actor("alice")


@pytest.fixture
def store(database_url: str) -> Iterator[EventStore]:
    store = open_event_store(Settings(database_url=database_url).eventsourcing_env())
    yield store
    close(store)


def create_tasks(store: EventStore, count: int, prefix: str = "t") -> None:
    commands = task_commands(store)
    for i in range(count):
        task_id = commands.create(
            ALICE, NewTask(f"{prefix}{i}", "summary", {"content": "text"}, priority="high")
        ).task_id
        commands.start(task_id, 1, "w1")


@dataclass
class RunningRelay:
    relay: Relay
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def stopped(self) -> None:
        self.stop.set()
        await self.task


@asynccontextmanager
async def running(
    store: EventStore, database_url: str, nats: EmbeddedNats
) -> AsyncIterator[RunningRelay]:
    bus = await connect(nats.url_for("relay"), "test-relay")
    relay = relay_for(store, database_url, bus)
    stop = asyncio.Event()
    handle = RunningRelay(relay, stop, asyncio.create_task(relay.run(stop)))
    try:
        yield handle
    finally:
        await handle.stopped()
        await bus.close()


@asynccontextmanager
async def running_relay(
    store: EventStore, database_url: str, nats: EmbeddedNats
) -> AsyncIterator[Relay]:
    async with running(store, database_url, nats) as handle:
        yield handle.relay


async def stream_contents(nats: EmbeddedNats) -> list[TaskEvent]:
    bus: Bus = await connect(nats.url_for("relay"), "test-reader")
    try:
        info = await bus.js.stream_info(STREAM)
        events = []
        for sequence in range(1, info.state.last_seq + 1):
            message = await bus.js.get_msg(STREAM, seq=sequence)
            event = decode(message.data or b"")
            assert isinstance(event, TaskEvent)
            assert message.subject == subject_of(event)
            assert message.headers
            assert message.headers["Nats-Msg-Id"] == f"agenttasks:{event.position}"
            events.append(event)
        return events
    finally:
        await bus.close()


def stored_positions(store: EventStore) -> list[int]:
    return [item.position for item in read_log(store)]


async def test_every_event_from_concurrent_writers_is_published_once_in_order(
    store: EventStore, database_url: str, nats_server: EmbeddedNats
) -> None:
    writers = [threading.Thread(target=create_tasks, args=(store, 25, f"w{n}-")) for n in range(8)]
    async with running_relay(store, database_url, nats_server) as relay:
        for writer in writers:
            writer.start()
        await asyncio.to_thread(lambda: [w.join() for w in writers])
        expected = stored_positions(store)
        await wait_until(lambda: relay.published_position >= expected[-1])
        assert await relay.lag() == 0
    published = await stream_contents(nats_server)
    assert [e.position for e in published] == expected
    first = published[0]
    assert (first.type, first.user, first.task_type, first.priority) == (
        "created",
        "alice",
        "summary",
        "high",
    )
    assert {e.type for e in published} == {"created", "started"}


async def test_a_relay_restart_loses_and_repeats_nothing(
    store: EventStore, database_url: str, nats_server: EmbeddedNats
) -> None:
    create_tasks(store, 20)
    async with running_relay(store, database_url, nats_server) as relay:
        await wait_until(lambda: relay.published_position >= stored_positions(store)[-1])
    create_tasks(store, 20, "after-stop-")
    async with running_relay(store, database_url, nats_server) as relay:
        await wait_until(lambda: relay.published_position >= stored_positions(store)[-1])
    assert [e.position for e in await stream_contents(nats_server)] == stored_positions(store)


async def test_a_nats_restart_loses_repeats_and_reorders_nothing(
    store: EventStore,
    database_url: str,
    start_nats_server: Callable[..., EmbeddedNats],
    tmp_path: Path,
) -> None:
    nats = start_nats_server(tmp_path / "nats")
    async with running_relay(store, database_url, nats) as relay:
        create_tasks(store, 10)
        await wait_until(lambda: relay.published_position >= stored_positions(store)[-1])
        nats.stop()
        create_tasks(store, 10, "while-nats-is-down-")
        nats = start_nats_server(tmp_path / "nats", nats.port)
        create_tasks(store, 10, "after-nats-is-back-")
        await wait_until(lambda: relay.published_position >= stored_positions(store)[-1])
    assert [e.position for e in await stream_contents(nats)] == stored_positions(store)


async def test_a_postgres_restart_is_survived(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    postgres = start_postgres(tmp_path / "pg")
    try:
        url = create_database(postgres.url, "relay_restart")
        store = open_event_store(Settings(database_url=url).eventsourcing_env())
        async with running_relay(store, url, nats_server) as relay:
            create_tasks(store, 5)
            await wait_until(lambda: relay.published_position >= stored_positions(store)[-1])
            postgres.stop()
            postgres = start_postgres(tmp_path / "pg")
            await wait_until(lambda: _tries_to_write(store))
            await wait_until(lambda: relay.published_position >= stored_positions(store)[-1])
        assert [e.position for e in await stream_contents(nats_server)] == stored_positions(store)
        close(store)
    finally:
        postgres.stop()


def _tries_to_write(store: EventStore) -> bool:
    try:
        create_tasks(store, 5, "after-postgres-restart-")
    except Exception:  # the pool notices the restart on first use
        return False
    return True


async def test_of_two_relays_only_one_publishes_and_the_standby_takes_over(
    store: EventStore, database_url: str, nats_server: EmbeddedNats
) -> None:
    async with running(store, database_url, nats_server) as leader:
        await wait_until(lambda: leader.relay.is_leader)
        async with running(store, database_url, nats_server) as standby:
            create_tasks(store, 10)
            await wait_until(lambda: leader.relay.published_position >= stored_positions(store)[-1])
            assert not standby.relay.is_leader
            assert standby.relay.published_position == 0

            await leader.stopped()
            create_tasks(store, 10, "after-leader-stopped-")
            await wait_until(
                lambda: standby.relay.published_position >= stored_positions(store)[-1]
            )
            assert standby.relay.is_leader
    assert [e.position for e in await stream_contents(nats_server)] == stored_positions(store)


async def test_a_poison_event_and_the_events_that_need_it_are_skipped_with_markers_in_order(
    store: EventStore, database_url: str, nats_server: EmbeddedNats
) -> None:
    from agenttasks import quarantine
    from agenttasks.bus.messages import SkippedEvent
    from tests.security.test_poison_events import store_poison

    poisoned, position = store_poison(database_url)
    create_tasks(store, 1)  # created and started: decodable, and mappable
    healthy = next(item.event.originator_id for item in read_log(store) if item.position > position)
    with psycopg.connect(database_url) as connection:
        # A decodable event of the poisoned task: mapping it needs the task's first event.
        connection.execute(
            "INSERT INTO agenttasks_events (originator_id, originator_version, topic, state) "
            "SELECT %s, 2, topic, state FROM agenttasks_events "
            "WHERE originator_id = %s AND originator_version = 2",
            (poisoned, healthy),
        )
    create_tasks(store, 1, "after-")
    expected = stored_positions(store)
    async with running_relay(store, database_url, nats_server) as relay:
        await wait_until(lambda: relay.published_position >= expected[-1])
        assert relay.is_leader
        assert relay.skipped == 2
    published = await stream_payloads(nats_server)
    assert [event.position for event in published] == expected  # dense: nobody waits
    skipped = [event for event in published if isinstance(event, SkippedEvent)]
    assert [(e.position, e.originator_id) for e in skipped] == [
        (position, str(poisoned)),
        (expected[3], str(poisoned)),
    ]
    assert skipped[0].reason.startswith("undecodable: ")
    assert skipped[1].reason.startswith("unmappable: ")
    with psycopg.connect(database_url) as connection, connection.cursor() as cursor:
        entries = quarantine.pending(cursor)
    assert [(e.consumer, e.position) for e in entries] == [
        ("relay", position),
        ("relay", expected[3]),
    ]


async def stream_payloads(nats: EmbeddedNats) -> list[Any]:
    bus: Bus = await connect(nats.url_for("relay"), "test-reader")
    try:
        info = await bus.js.stream_info(STREAM)
        messages = [await bus.js.get_msg(STREAM, seq=s) for s in range(1, info.state.last_seq + 1)]
    finally:
        await bus.close()
    payloads = [decode(message.data or b"") for message in messages]
    assert [m.subject for m in messages] == [subject_of(p) for p in payloads]
    return payloads
