"""The store's append from async code (store.append_async) and the lock both appends take.

append_async runs the recorder's one-statement append on a psycopg AsyncConnection: the same
server-side function as the store's own saves, so the same table lock, the same continuity
guard and the same errors (eventsourcing's IntegrityError) hold for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from agenttasks.application.append_lock import AppendLockTimeout
from agenttasks.application.store import (
    FLAT_AT_MOST,
    EventStore,
    OrderedAppendRecorder,
    append_after_async,
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
    settings = Settings(database_url=database_url, append_lock_timeout=timedelta(seconds=1))
    env = settings.eventsourcing_env()
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
            with pytest.raises(AppendLockTimeout):
                await asyncio.wait_for(asyncio.shield(saving), 10)
        finally:
            await holder.rollback()  # also lets a save that ignored the timeout end
    assert len(store.recorder.select_notifications(0, 10)) == 1


@pytest.mark.parametrize("fresh_count", [1, FLAT_AT_MOST + 1])
async def test_a_guarded_append_stores_only_the_aggregates_whose_previous_version_is_there(
    store: EventStore, database_url: str, fresh_count: int
) -> None:
    # The start from a created message: its Created must be stored at the message's position
    # with nothing after it; a re-created task (same id, a Created elsewhere) must not pass.
    recorder = recorder_of(store)
    commands = task_commands(store)

    def created() -> tuple[Task, int]:
        task_id = commands.create(ALICE, NewTask("t", "summary", {"content": "x"})).task_id
        position = store.recorder.max_notification_id()
        assert position is not None
        copy: Task = store.repository.get(task_id)
        copy.start(1, "w")
        return copy, position

    fresh = [created() for _ in range(fresh_count)]
    moved, moved_at = created()
    commands.cancel(ALICE, moved.id)
    recreated, recreated_at = created()
    gone, gone_at = created()
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        await connection.execute(
            f"DELETE FROM {recorder.events_table_name} WHERE originator_id = ANY(%s)",
            ([recreated.id, gone.id],),
        )
        # The re-created task's Created: version 1 again, at a new position.
        twin = [
            StoredEvent(recreated.id, 1, e.topic, e.state)
            for e in pending(store, new_task(store, "n"))
        ]
        await append_async(connection, recorder, twin)
        guarded = [*fresh, (moved, moved_at), (recreated, recreated_at), (gone, gone_at)]
        ids = await append_after_async(
            connection,
            recorder,
            pending(store, *(t for t, _ in guarded)),
            {t.id: at for t, at in guarded},
        )
        assert ids[:fresh_count] == sorted(ids[:fresh_count])  # type: ignore[type-var]
        assert None not in ids[:fresh_count]
        assert ids[fresh_count:] == [None, None, None]
        assert store.recorder.max_notification_id() == ids[fresh_count - 1]
        for task, _ in fresh:
            assert store.repository.get(task.id).status == "running"
        assert [e.originator_version for e in store.recorder.select_events(moved.id)] == [1, 2]
        assert [e.originator_version for e in store.recorder.select_events(recreated.id)] == [1]
        assert store.recorder.select_events(gone.id) == []


async def test_a_guarded_append_refused_or_clashing_stores_nothing_and_one_that_stores_notifies(
    store: EventStore, database_url: str
) -> None:
    recorder = recorder_of(store)
    commands = task_commands(store)
    task_id = commands.create(ALICE, NewTask("t", "summary", {"content": "x"})).task_id
    position = store.recorder.max_notification_id()
    assert position is not None
    first: Task = store.repository.get(task_id)
    second: Task = store.repository.get(task_id)
    for task in (first, second):
        task.start(1, "w")
    started, again = pending(store, first), pending(store, second)
    async with (
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as listener,
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection,
    ):
        await listener.execute(f"LISTEN {recorder.channel_name}")
        # Not the message's position (a Created stored elsewhere): nothing stored.
        stale = await append_after_async(connection, recorder, started, {task_id: position + 1000})
        assert stale == [None]
        # Two copies of one start in one call: the unique key, nothing stored.
        with pytest.raises(IntegrityError):
            await append_after_async(connection, recorder, [*started, *again], {task_id: position})
        with pytest.raises(ValueError, match="previous position"):
            await append_after_async(connection, recorder, again, {})
        assert store.recorder.max_notification_id() == position
        # The relay's wake-up: the guarded append notifies too.
        ids = await append_after_async(connection, recorder, started, {task_id: position})
        notifies = listener.notifies(timeout=10, stop_after=1)
        heard = [n.channel async for n in notifies]
        assert heard == [recorder.channel_name]
        assert ids == [store.recorder.max_notification_id()]
        assert position < ids[0]  # type: ignore[operator]
        # Planned once per session, not at every call (the plan cache's custom plans cost ~0.5 ms).
        cursor = await connection.execute(
            "SELECT proconfig FROM pg_proc WHERE proname = %s",
            (f"{recorder.channel_name}_append_after",),
        )
        assert await cursor.fetchall() == [
            (["plan_cache_mode=force_generic_plan", "enable_seqscan=off"],)
        ]


async def test_a_guarded_append_first_called_on_a_young_table_still_probes_the_key(
    store: EventStore, database_url: str
) -> None:
    # The session's generic plan is built at its first call: a worker starting on a young events
    # table had it hash a sequential scan of the whole table at every later call (PGLIFE).
    recorder = recorder_of(store)
    commands = task_commands(store)

    def created(count: int) -> dict[Any, int]:
        tasks = [new_task(store, "t") for _ in range(count)]
        stored = pending(store, *tasks)
        positions = recorder.insert_events(stored)
        return {e.originator_id: p for e, p in zip(stored, positions, strict=True)}

    def started(after: dict[Any, int]) -> list[StoredEvent]:
        copies = [store.repository.get(task_id) for task_id in after]
        for copy in copies:
            copy.start(1, "w")
        return pending(store, *copies)

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        early = created(FLAT_AT_MOST + 1)
        assert None not in await append_after_async(connection, recorder, started(early), early)
        created(3000)
        await connection.execute("LOAD 'auto_explain'")
        for setting in (
            "log_nested_statements = on", "log_min_duration = 0", "log_level = notice",
        ):  # fmt: skip
            await connection.execute(f"SET auto_explain.{setting}")
        plans: list[str] = []
        connection.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
        later = created(FLAT_AT_MOST + 1)
        assert None not in await append_after_async(connection, recorder, started(later), later)
    checks = [p for p in plans if "INSERT INTO" in p and recorder.events_table_name in p]
    assert len(checks) == 1
    assert "Seq Scan" not in checks[0]
    assert f"Index Scan Backward using {recorder.events_table_name}_pkey" in checks[0]
    assert (
        len(commands.store.recorder.select_notifications(0, 10_000))
        == 2 * (2 * (FLAT_AT_MOST + 1)) + 3000
    )
