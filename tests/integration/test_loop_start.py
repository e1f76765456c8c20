"""Attempt 1 started on the worker's event loop (workers/loop_start.py): the starts that begin
together are one guarded append and nothing else; a copy that is not the stored task writes
nothing."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg import pq

from agenttasks.application.bus_payloads import mapper_for
from agenttasks.application.store import EventStore, close, history, open_event_store
from agenttasks.application.tasks import Actor, NewTask, Written
from agenttasks.bootstrap import task_commands
from agenttasks.bus.consumers import Delivery
from agenttasks.bus.messages import encode
from agenttasks.domain.task import Task
from agenttasks.observability import tracing
from agenttasks.servers.postgres import create_database
from agenttasks.settings import Settings
from agenttasks.workers.intake import job_from, task_from_created
from agenttasks.workers.loop_start import LoopStarts

ALICE = Actor("alice")


@pytest.fixture(scope="module")
def database(postgres: Any) -> str:
    return create_database(postgres.url, "test_loop_start", exist_ok=True)


@pytest.fixture(scope="module")
def store(database: str) -> Iterator[EventStore]:
    store = open_event_store(Settings(database_url=database).eventsourcing_env())
    yield store
    close(store)


def create(store: EventStore, title: str = "t", key: str | None = None) -> tuple[Task, int]:
    """A new task's copy as a worker builds it from the Created message, and its position."""
    task_id = task_commands(store).create(ALICE, NewTask(title, "summary", {"content": "x"}), key)
    first = history(store, task_id.task_id)[0]
    payload = mapper_for(store).map(first.event, first.position)
    assert payload is not None
    copy = task_from_created(job_from(Delivery(encode(payload), 1, None)))
    assert copy is not None
    return copy, first.position


def kinds(store: EventStore, task_id: UUID) -> list[str]:
    return [type(e.event).__name__ for e in history(store, task_id)]


def transactions(store: EventStore, task_ids: list[UUID]) -> set[str]:
    """The transactions that stored these tasks' Started events (xmin)."""
    recorder: Any = store.recorder
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(
            f"SELECT xmin::text AS x FROM {recorder.events_table_name} "
            "WHERE originator_id = ANY(%s) AND originator_version = 2",
            (task_ids,),
        )
        return {row["x"] for row in cursor.fetchall()}


def delete_events(store: EventStore, task_id: UUID) -> None:
    """What a deletion does to the store (deletion.py step 3), for the one task."""
    recorder: Any = store.recorder
    with recorder.datastore.transaction(commit=True) as cursor:
        cursor.execute(
            f"DELETE FROM {recorder.events_table_name} WHERE originator_id = %s",
            (task_id,),
        )


async def test_starts_that_begin_together_are_one_append_with_each_attempts_trace(
    store: EventStore, database: str
) -> None:
    starts = LoopStarts(store, database)
    copies = [create(store) for _ in range(3)]

    async def start(copy: Task, position: int) -> tuple[Written | None, str]:
        with tracing.span("worker attempt", None) as span:
            return await starts.start(copy, position, "w1"), span.header

    outcomes = await asyncio.gather(*(start(c, p) for c, p in copies))
    await starts.close()
    for (copy, _), (written, trace) in zip(copies, outcomes, strict=True):
        assert written is not None
        assert written.task is copy
        assert copy.status == "running"
        assert copy.worker_id == "w1"
        stored = history(store, copy.id)
        assert [type(e.event).__name__ for e in stored] == ["Created", "Started"]
        assert written.position == stored[1].position
        assert stored[1].event.trace == trace  # type: ignore[attr-defined]
    assert len(transactions(store, [c.id for c, _ in copies])) == 1


async def test_a_pass_of_starts_sends_one_statement(store: EventStore, database: str) -> None:
    # No freshness read before the append (it was a round trip on created -> started).
    starts = LoopStarts(store, database)
    warm, warm_at = create(store)
    assert await starts.start(warm, warm_at, "w1") is not None
    session = starts._session.connection
    assert session is not None
    copies = [create(store) for _ in range(3)]
    with tempfile.TemporaryFile("w+") as trace:
        session.pgconn.trace(trace.fileno())
        session.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        outcomes = await asyncio.gather(*(starts.start(c, p, "w1") for c, p in copies))
        session.pgconn.untrace()
        trace.seek(0)
        sent = [fields[2] for fields in (line.split("\t") for line in trace) if fields[0] == "F"]
    await starts.close()
    assert all(o is not None for o in outcomes)
    # One statement run (a Bind, or a simple Query): the append, no read before it.
    assert sum(message.strip() in ("Bind", "Query") for message in sent) == 1
    assert len(transactions(store, [c.id for c, _ in copies])) == 1


async def test_a_copy_of_a_task_changed_since_writes_nothing(
    store: EventStore, database: str
) -> None:
    starts = LoopStarts(store, database)
    copy, position = create(store)
    task_commands(store).cancel(ALICE, copy.id)
    assert await starts.start(copy, position, "w1") is None
    await starts.close()
    assert kinds(store, copy.id) == ["Created", "Cancelled"]


async def test_a_copy_of_a_deleted_or_recreated_task_writes_nothing(
    store: EventStore, database: str
) -> None:
    starts = LoopStarts(store, database)
    gone, gone_at = create(store)
    delete_events(store, gone.id)
    key = f"k-{uuid4()}"
    old, old_at = create(store, "old", key)
    delete_events(store, old.id)
    create(store, "new", key)  # same Idempotency-Key: same id, a new Created
    outcomes = await asyncio.gather(
        starts.start(gone, gone_at, "w1"), starts.start(old, old_at, "w1")
    )
    await starts.close()
    assert list(outcomes) == [None, None]
    assert kinds(store, gone.id) == []
    assert kinds(store, old.id) == ["Created"]


async def test_two_copies_of_one_task_in_one_batch_start_it_once(
    store: EventStore, database: str
) -> None:
    # The second copy is not sent (it would clash with the first); the other tasks still start.
    starts = LoopStarts(store, database)
    first, position = create(store)
    second = task_from_created_again(store, first.id)
    other, other_at = create(store)
    outcomes = await asyncio.gather(
        starts.start(first, position, "w1"),
        starts.start(second, position, "w2"),
        starts.start(other, other_at, "w1"),
    )
    await starts.close()
    assert [o is not None for o in outcomes] == [True, False, True]
    assert kinds(store, first.id) == ["Created", "Started"]
    assert kinds(store, other.id) == ["Created", "Started"]


def task_from_created_again(store: EventStore, task_id: UUID) -> Task:
    first = history(store, task_id)[0]
    payload = mapper_for(store).map(first.event, first.position)
    assert payload is not None
    copy = task_from_created(job_from(Delivery(encode(payload), 2, None)))
    assert copy is not None
    return copy


async def test_a_broken_session_fails_its_batch_and_the_next_start_reconnects(
    store: EventStore, database: str
) -> None:
    # As a failed store command: the worker offers the message again (nak), nothing is lost.
    starts = LoopStarts(store, database)
    warm, warm_at = create(store)
    assert await starts.start(warm, warm_at, "w1") is not None
    session = starts._session.connection  # the session a server restart would break
    assert session is not None
    recorder: Any = store.recorder
    with recorder.datastore.transaction(commit=True) as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", (session.info.backend_pid,))
    broken, broken_at = create(store)
    with pytest.raises(psycopg.OperationalError):
        await starts.start(broken, broken_at, "w1")
    assert kinds(store, broken.id) == ["Created"]
    redelivered = task_from_created_again(store, broken.id)
    written = await starts.start(redelivered, broken_at, "w1")
    await starts.close()
    assert written is not None
    assert kinds(store, broken.id) == ["Created", "Started"]
