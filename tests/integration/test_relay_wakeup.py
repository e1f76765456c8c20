"""The relay publishes on each commit's NOTIFY: its poll is only a backstop.

After a short read the relay waits without reading again (docs/performance.md): correct only
if every commit after that read still wakes it. With the poll pushed out to a minute, events
written one at a time and in bursts must each be published within seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import psycopg
import pytest

from agenttasks import relay as relay_module
from agenttasks.application.store import EventStore, close, open_event_store
from agenttasks.application.tasks import Actor, NewTask
from agenttasks.bootstrap import task_commands
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.settings import Settings
from tests.integration.test_relay import running_relay
from tests.waiting import wait_until

ALICE = Actor("alice")


@pytest.fixture
def store(database_url: str) -> Iterator[EventStore]:
    store = open_event_store(Settings(database_url=database_url).eventsourcing_env())
    yield store
    close(store)


async def test_every_commit_wakes_the_relay_without_its_poll(
    store: EventStore,
    database_url: str,
    nats_server: EmbeddedNats,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(relay_module, "POLL_SECONDS", 60.0)
    commands = task_commands(store)

    def create(title: str) -> int:
        written = commands.create(ALICE, NewTask(title, "summary", {"content": "text"}))
        assert written.position is not None
        return written.position

    async def published(position: int) -> None:
        await wait_until(lambda: relay.published_position >= position, within=10.0)

    def burst(name: str) -> int:
        return [create(f"{name}-{n}") for n in range(20)][-1]

    async with running_relay(store, database_url, nats_server) as relay:
        await wait_until(lambda: relay.is_leader)
        for index in range(5):  # one at a time: the relay is idle at the end of the log each time
            await published(await asyncio.to_thread(create, f"one-{index}"))
        for index in range(3):  # several commits while the relay reads and publishes
            await published(await asyncio.to_thread(burst, f"burst-{index}"))
        assert await relay.lag() == 0


async def test_a_wake_up_leaves_the_session_free_for_the_read_at_once(database_url: str) -> None:
    # The read after the wait needs the session's lock. A notifies() generator left to the
    # garbage collector holds it until a task of its own closes it: a turn of the loop more
    # on every wake-up (docs/performance.md, "The relay's hop").
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as session:
        await session.execute('LISTEN "relay_wakeup_test"')
        await session.execute('NOTIFY "relay_wakeup_test"')
        assert await relay_module._notified(session)
        assert not session.lock.locked()
