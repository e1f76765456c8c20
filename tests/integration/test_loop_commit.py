"""Creates saved on the event loop (application/loop_commit.py): the creates of one moment are
one append; a request at fault fails alone; an idempotent repeat and a reused key answer as the
thread path does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError

from agenttasks.application.loop_commit import LoopCommitter
from agenttasks.application.store import EventStore, close, history, open_event_store, read_log
from agenttasks.application.tasks import (
    Actor,
    IdempotencyKeyReused,
    NewTask,
    TaskCommands,
    Written,
)
from agenttasks.bootstrap import task_commands
from agenttasks.domain.task import Task
from agenttasks.servers.postgres import create_database
from agenttasks.settings import Settings

ALICE = Actor("alice")


@pytest.fixture(scope="module")
def database(postgres: Any) -> str:
    return create_database(postgres.url, "test_loop_commit", exist_ok=True)


@pytest.fixture(scope="module")
def store(database: str) -> Iterator[EventStore]:
    store = open_event_store(Settings(database_url=database).eventsourcing_env())
    yield store
    close(store)


@pytest.fixture
async def committer(store: EventStore, database: str) -> AsyncIterator[LoopCommitter]:
    committer = LoopCommitter(store, database)
    yield committer
    await committer.close()


def summary(title: str) -> NewTask:
    return NewTask(title=title, task_type="summary", task_config={"content": "Some text."})


async def in_thread(function: Any, *args: Any) -> Written:
    result: Written = await asyncio.to_thread(function, *args)
    return result


async def test_creates_of_one_moment_are_one_append_in_the_log_order(
    store: EventStore, committer: LoopCommitter
) -> None:
    commands = task_commands(store)
    created = await asyncio.gather(
        *(
            commands.create_on_loop(ALICE, summary(f"t{i}"), None, committer, in_thread)
            for i in range(12)
        )
    )
    assert committer.transactions == 1
    positions = [w.position for w in created]
    assert all(w.created and w.task is not None for w in created)
    stored = {e.event.originator_id: e.position for e in read_log(store)}
    # Each answer's position is where its Created is stored (read your writes waits on it).
    assert positions == [stored[w.task_id] for w in created]
    assert positions == sorted(positions)
    assert commands.get(ALICE, created[0].task_id).title == "t0"


async def test_a_request_at_fault_fails_alone_and_the_others_are_stored(
    store: EventStore, committer: LoopCommitter
) -> None:
    first = Task.create(title="a", task_type="summary", task_config={}, created_by="alice")
    await committer.save(first)
    clash = Task.create(
        title="b", task_type="summary", task_config={}, created_by="alice", task_id=first.id
    )
    others = [
        Task.create(title=f"o{i}", task_type="summary", task_config={}, created_by="alice")
        for i in range(3)
    ]
    outcomes = await asyncio.gather(
        *(committer.save(t) for t in [others[0], clash, *others[1:]]), return_exceptions=True
    )
    assert isinstance(outcomes[1], IntegrityError)
    for task, outcome in zip(others, [outcomes[0], *outcomes[2:]], strict=True):
        assert isinstance(outcome, list), outcome
        assert [e.position for e in history(store, task.id)] == outcome
    assert [type(e.event).__name__ for e in history(store, first.id)] == ["Created"]


async def test_racing_creates_with_one_key_store_one_task_and_repeat_it(
    store: EventStore, committer: LoopCommitter
) -> None:
    commands = task_commands(store)
    outcomes = await asyncio.gather(
        *(
            commands.create_on_loop(ALICE, summary("same"), "key-1", committer, in_thread)
            for _ in range(6)
        )
    )
    assert sorted(w.created for w in outcomes) == [False] * 5 + [True]
    assert len({w.task_id for w in outcomes}) == 1
    assert len(history(store, outcomes[0].task_id)) == 1
    with pytest.raises(IdempotencyKeyReused):
        await commands.create_on_loop(ALICE, summary("other"), "key-1", committer, in_thread)


async def test_a_lost_session_is_replaced_once(
    store: EventStore, committer: LoopCommitter, database: str
) -> None:
    commands: TaskCommands = task_commands(store)
    await commands.create_on_loop(ALICE, summary("before"), None, committer, in_thread)
    connection = committer._session.connection  # the session a restart would break
    assert connection is not None
    pid = connection.info.backend_pid
    with psycopg.connect(database, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    written = await commands.create_on_loop(ALICE, summary("after"), None, committer, in_thread)
    assert written.position is not None
    assert commands.get(ALICE, written.task_id).title == "after"
