"""An attempt's reports saved on the worker's event loop (workers/context.py with a LoopCommitter):
the reports of concurrent attempts are one append; a copy gone stale (a cancel, a takeover, a
second writer) clashes, is loaded afresh on a thread, and the aggregate still refuses what the
attempt may no longer write."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from agenttasks.application.loop_commit import LoopCommitter
from agenttasks.application.store import EventStore, close, open_event_store
from agenttasks.application.tasks import SYSTEM, Actor, NewTask, TaskCommands
from agenttasks.bootstrap import task_commands
from agenttasks.domain.updates import KINDS
from agenttasks.observability import tracing
from agenttasks.servers.postgres import create_database
from agenttasks.settings import Settings
from agenttasks.workers.context import AgentContext, AttemptOver
from agenttasks.workers.fetch import Fetcher
from agenttasks.workers.limits import Limits

ANN = Actor("ann")


@pytest.fixture(scope="module")
def database(postgres: Any) -> str:
    return create_database(postgres.url, "test_worker_loop_writes", exist_ok=True)


@pytest.fixture(scope="module")
def store(database: str) -> Iterator[EventStore]:
    store = open_event_store(Settings(database_url=database).eventsourcing_env())
    yield store
    close(store)


@pytest.fixture(scope="module")
def commands(store: EventStore) -> TaskCommands:
    return task_commands(store)


@pytest.fixture(scope="module")
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as pool:
        yield pool


@pytest.fixture
async def committer(store: EventStore, database: str) -> AsyncIterator[LoopCommitter]:
    committer = LoopCommitter(store, database)
    yield committer
    await committer.close()


class CountingCommands(TaskCommands):
    """The store's commands, counting the reports that went through a store thread."""

    def __init__(self, commands: TaskCommands) -> None:
        self.__dict__.update(commands.__dict__)
        self.on_threads = 0

    def report_many(self, *args: Any, **kwargs: Any) -> Any:
        self.on_threads += 1
        return super().report_many(*args, **kwargs)


def attempt_of(
    commands: TaskCommands, executor: ThreadPoolExecutor, committer: LoopCommitter | None
) -> AgentContext:
    task_id = commands.create(ANN, NewTask("t", "data_analysis", {"data": {"x": [1]}})).task_id
    started = commands.start(task_id, 1, "w")
    assert started.task is not None
    return AgentContext(
        started.task,
        commands,
        executor,
        llm=None,
        fetcher=Fetcher(()),
        limits=Limits.from_settings(Settings()),
        hold_at_most=60.0,  # nothing is saved by the timer in these tests
        committer=committer,
    )


def kinds(commands: TaskCommands, task_id: Any) -> list[str]:
    return [KINDS[type(e.event)] for e in commands.history(SYSTEM, task_id)]


def contents(commands: TaskCommands, task_id: Any) -> list[tuple[str, dict[str, Any]]]:
    """Each stored event's type and fields, but for what differs between two tasks anyway."""
    differ = {"originator_id", "timestamp", "started_at"}
    return [
        (type(e.event).__qualname__, {k: v for k, v in vars(e.event).items() if k not in differ})
        for e in commands.history(SYSTEM, task_id)
    ]


async def test_the_loop_stores_the_same_events_as_the_store_thread(
    commands: TaskCommands, executor: ThreadPoolExecutor, committer: LoopCommitter
) -> None:
    on_loop = attempt_of(commands, executor, committer)
    on_thread = attempt_of(commands, executor, None)  # a worker without a loop committer
    for ctx in (on_loop, on_thread):
        await ctx.progress(55, "Summarising 1 source(s)")
        ctx.offline_result = True
        await ctx.note("a note", {"n": 1})
        await ctx.complete({"summary": "Some text.", "engine": "offline"})
        await ctx.close()
    assert contents(commands, on_loop.task_id) == contents(commands, on_thread.task_id)
    assert len(contents(commands, on_loop.task_id)) == 6  # progress+note, model call+completed


async def test_reports_of_concurrent_attempts_are_one_append_on_the_loop_and_in_order(
    commands: TaskCommands, executor: ThreadPoolExecutor, committer: LoopCommitter
) -> None:
    counting = CountingCommands(commands)
    contexts = [attempt_of(counting, executor, committer) for _ in range(6)]
    for ctx in contexts:
        await ctx.progress(40, "half way")
    written = await asyncio.gather(*(ctx.complete({"answer": 1}) for ctx in contexts))
    assert committer.transactions == 1
    assert counting.on_threads == 0
    for ctx, w in zip(contexts, written, strict=True):
        assert kinds(commands, ctx.task_id) == ["created", "started", "progress", "completed"]
        stored = commands.history(SYSTEM, ctx.task_id)
        # The answer's position is the completion's, as the thread path's is (read your writes).
        assert w.position == stored[-1].position
        assert w.task is not None
        assert w.task.status == "completed"
        assert commands.get(SYSTEM, ctx.task_id).result_data == {"answer": 1}
        await ctx.close()


async def test_a_cancel_after_the_copy_clashes_and_the_attempt_is_refused_with_nothing_stored(
    commands: TaskCommands, executor: ThreadPoolExecutor, committer: LoopCommitter
) -> None:
    counting = CountingCommands(commands)
    ctx = attempt_of(counting, executor, committer)
    await ctx.progress(10, "one")
    commands.cancel(ANN, ctx.task_id)  # our copy does not know: its append clashes
    with pytest.raises(AttemptOver):
        await ctx.complete({"answer": 1})
    assert counting.on_threads == 1  # loaded afresh there, and the aggregate said no
    assert kinds(commands, ctx.task_id) == ["created", "started", "cancelled"]
    assert commands.get(SYSTEM, ctx.task_id).status == "cancelled"
    await ctx.close()


async def test_a_report_racing_another_writer_is_retried_from_the_store_and_kept(
    commands: TaskCommands, executor: ThreadPoolExecutor, committer: LoopCommitter
) -> None:
    counting = CountingCommands(commands)
    ctx = attempt_of(counting, executor, committer)
    # Another writer of the task (a note from elsewhere) moves its version past our copy's.
    commands.note(ctx.task_id, 1, "from elsewhere")
    await ctx.note("mine")
    assert counting.on_threads == 1
    # The copy the context holds now is the stored one: the next report is on the loop again.
    before = committer.transactions
    written = await ctx.complete({"answer": 2})
    assert committer.transactions == before + 1
    assert counting.on_threads == 1
    assert kinds(commands, ctx.task_id) == ["created", "started", "info", "info", "completed"]
    assert written.task is not None
    assert written.task.version == 5
    await ctx.close()


async def test_the_events_saved_on_the_loop_record_the_attempts_trace(
    commands: TaskCommands, executor: ThreadPoolExecutor, committer: LoopCommitter
) -> None:
    ctx = attempt_of(commands, executor, committer)
    with tracing.span("worker attempt", None, task=ctx.task_id) as span:
        await ctx.progress(10, "one")
        await ctx.complete({"answer": 3})
    await ctx.close()
    traces = [vars(e.event)["trace"] for e in commands.history(SYSTEM, ctx.task_id)[2:]]
    assert traces == [span.header, span.header]


async def test_a_loop_session_that_cannot_be_had_falls_back_to_the_store_threads(
    commands: TaskCommands, executor: ThreadPoolExecutor, store: EventStore, tmp_path: Any
) -> None:
    # As when Postgres restarts under the worker: the loop's reconnect is refused at once, while
    # the store's pool waits for the server; the report must not fail the attempt.
    gone = LoopCommitter(store, f"host={tmp_path} dbname=nowhere user=postgres connect_timeout=1")
    counting = CountingCommands(commands)
    ctx = attempt_of(counting, executor, gone)
    written = await ctx.complete({"answer": 4})
    assert counting.on_threads == 1
    assert written.task is not None
    assert written.task.status == "completed"
    assert kinds(commands, ctx.task_id) == ["created", "started", "completed"]
    await ctx.close()
    await gone.close()
