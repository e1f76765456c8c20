"""The store's append from async code (store.append_async) and the lock both appends take.

append_async runs the recorder's one-statement append on a psycopg AsyncConnection: the same
server-side function as the store's own saves, so the same table lock, the same continuity
guard and the same errors (eventsourcing's IntegrityError) hold for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, OperationalError, StoredEvent

from agenttasks.application.store import (
    FLAT_AT_MOST,
    EventStore,
    OrderedAppendRecorder,
    append_async,
    close,
    open_event_store,
)
from agenttasks.application.tasks import Actor, NewTask
from agenttasks.bootstrap import task_commands
from agenttasks.domain.task import Task
from agenttasks.settings import Settings
from tests.waiting import wait_until

ALICE = Actor("alice")


@pytest.fixture
def store(database_url: str) -> Iterator[EventStore]:
    # A lock timeout, so a save that cannot get the table lock fails instead of waiting for ever.
    env = {**Settings(database_url=database_url).eventsourcing_env(), "POSTGRES_LOCK_TIMEOUT": "1"}
    store = open_event_store(env)
    yield store
    close(store)


def recorder_of(store: EventStore) -> OrderedAppendRecorder:
    recorder = store.recorder
    assert isinstance(recorder, OrderedAppendRecorder)
    return recorder


def pending(store: EventStore, *tasks: Task) -> list[StoredEvent]:
    return [store.mapper.to_stored_event(e) for t in tasks for e in t.collect_events()]


def new_task(store: EventStore, name: str) -> Task:
    return task_commands(store).build(ALICE, NewTask(name, "summary", {"content": "x"}))


async def test_an_async_append_stores_in_order_returns_the_ids_and_notifies(
    store: EventStore, database_url: str
) -> None:
    recorder = recorder_of(store)
    first, second = new_task(store, "one"), new_task(store, "two")
    async with (
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as listener,
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection,
    ):
        await listener.execute(f"LISTEN {recorder.channel_name}")
        ids = await append_async(connection, recorder, pending(store, first, second))
        notifies = listener.notifies(timeout=10, stop_after=1)
        heard = [n.channel async for n in notifies]
    assert heard == [recorder.channel_name]  # the relay's wake-up
    stored = store.recorder.select_notifications(0, 10)
    assert ids == [n.id for n in stored]
    assert [n.originator_id for n in stored] == [first.id, second.id]
    assert store.repository.get(second.id).title == "two"  # decodes like any saved event


@pytest.mark.parametrize("count", [1, FLAT_AT_MOST, FLAT_AT_MOST + 1, 40])
def test_a_batch_of_any_length_is_stored_in_order_and_a_clash_in_it_stores_nothing(
    store: EventStore, count: int
) -> None:
    # Short batches bind each value, long ones four arrays: both must store the same rows.
    tasks = [new_task(store, f"t{i}") for i in range(count)]
    recordings = store.save(*tasks)
    stored = store.recorder.select_notifications(0, 100)
    assert [r.notification.id for r in recordings] == [n.id for n in stored]
    assert [n.originator_id for n in stored] == [t.id for t in tasks]
    assert [store.repository.get(t.id).title for t in tasks] == [f"t{i}" for i in range(count)]
    clashing = [new_task(store, f"u{i}") for i in range(count - 1)]
    stale: Task = store.repository.get(tasks[-1].id)
    fresh: Task = store.repository.get(tasks[-1].id)
    fresh.start(1, "w1")
    store.save(fresh)
    stale.start(1, "w2")
    with pytest.raises(IntegrityError):
        store.save(*clashing, stale)
    assert len(store.recorder.select_notifications(0, 100)) == count + 1


async def test_an_async_clash_or_broken_history_is_integrity_error_and_stores_nothing(
    store: EventStore, database_url: str
) -> None:
    recorder = recorder_of(store)
    commands = task_commands(store)
    task_id = commands.create(ALICE, NewTask("t", "summary", {"content": "x"})).task_id
    gone_id = commands.create(ALICE, NewTask("gone", "summary", {"content": "x"})).task_id
    first: Task = store.repository.get(task_id)
    second: Task = store.repository.get(task_id)
    zombie: Task = store.repository.get(gone_id)
    for task in (first, second, zombie):
        task.start(1, "w")
    store.save(first)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        await connection.execute(
            f"DELETE FROM {recorder.events_table_name} WHERE originator_id = %s",
            (gone_id,),
        )
        before = store.recorder.max_notification_id()
        with pytest.raises(IntegrityError):
            await append_async(connection, recorder, pending(store, second))
        with pytest.raises(IntegrityError, match="does not continue"):
            await append_async(connection, recorder, pending(store, zombie))
        assert store.recorder.max_notification_id() == before
        assert store.recorder.select_events(gone_id) == []
        # The connection is usable after the errors: a good append goes through on it.
        again: Task = store.repository.get(task_id)
        again.report_progress(1, 5, "on")
        ids = await append_async(connection, recorder, pending(store, again))
        assert ids == [store.recorder.max_notification_id()]
    async with await psycopg.AsyncConnection.connect(database_url) as in_transaction:
        with pytest.raises(ValueError, match="autocommit"):
            await append_async(in_transaction, recorder, pending(store, new_task(store, "x")))


async def test_both_appends_wait_for_the_table_lock_within_the_lock_timeout(
    store: EventStore, database_url: str
) -> None:
    recorder = recorder_of(store)
    table = recorder.events_table_name
    async with (
        await psycopg.AsyncConnection.connect(database_url) as holder,
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection,
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as watcher,
    ):
        # What an uncommitted insert holds: a plain INSERT would not wait for it, an append must
        # (the table lock), or its ids could commit before smaller ones still being written.
        await holder.execute(f"LOCK TABLE {table} IN ROW EXCLUSIVE MODE")

        async def waiting_for_the_lock() -> bool:
            cursor = await watcher.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND query LIKE %s",
                (f"%{recorder.channel_name}_append%",),
            )
            row: Any = await cursor.fetchone()
            return bool(row[0])

        appending = asyncio.ensure_future(
            append_async(connection, recorder, pending(store, new_task(store, "held")))
        )
        await wait_until(waiting_for_the_lock, within=5)
        assert not appending.done()
        await holder.commit()  # the lock goes; the append takes it and commits
        assert len(await appending) == 1

        # The store's own save has the library's lock timeout (1 s here): an error, no wait.
        await holder.execute(f"LOCK TABLE {table} IN ROW EXCLUSIVE MODE")
        saving = asyncio.ensure_future(asyncio.to_thread(store.save, new_task(store, "late")))
        try:
            with pytest.raises(OperationalError):
                await asyncio.wait_for(asyncio.shield(saving), 10)
        finally:
            await holder.rollback()  # also lets a save that ignored the timeout end
    assert len(store.recorder.select_notifications(0, 10)) == 1
