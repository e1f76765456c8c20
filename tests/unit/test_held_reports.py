"""An attempt's held reports (progress, the end of a stream) go with its next write, in order,
and are refused together with it once the attempt is over."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from agenttasks.application.store import open_event_store
from agenttasks.application.tasks import SYSTEM, Actor, NewTask, TaskCommands
from agenttasks.bootstrap import task_commands
from agenttasks.domain.updates import KINDS
from agenttasks.observability import tracing
from agenttasks.settings import Settings
from agenttasks.workers.context import AgentContext, AttemptOver
from agenttasks.workers.fetch import Fetcher
from agenttasks.workers.limits import Limits
from tests.waiting import wait_until

ANN = Actor("ann")


@pytest.fixture
def commands() -> TaskCommands:
    return task_commands(open_event_store())  # in memory


@pytest.fixture(scope="module")
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as pool:
        yield pool


def attempt_of(
    commands: TaskCommands, executor: ThreadPoolExecutor, hold_at_most: float = 60.0
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
        hold_at_most=hold_at_most,  # by default nothing is saved by the timer
    )


def kinds(commands: TaskCommands, ctx: AgentContext) -> list[str]:
    return [KINDS[type(e.event)] for e in commands.history(SYSTEM, ctx.task_id)]


async def test_held_progress_and_streamed_text_are_saved_in_order_with_the_result(
    commands: TaskCommands, executor: ThreadPoolExecutor
) -> None:
    ctx = attempt_of(commands, executor)
    await ctx.progress(10, "one")
    ctx.stream_text("some ")
    await ctx.progress(20, "two")
    assert kinds(commands, ctx) == ["created", "started"]  # held, nothing written yet
    written = await ctx.complete({"answer": 1})
    assert kinds(commands, ctx) == [
        "created",
        "started",
        "progress",
        "result",
        "progress",
        "completed",
    ]
    assert written.task is not None
    assert written.task.status == "completed"
    await ctx.close()


async def test_held_reports_of_an_attempt_that_is_over_are_refused_with_its_next_write(
    commands: TaskCommands, executor: ThreadPoolExecutor
) -> None:
    ctx = attempt_of(commands, executor)
    await ctx.progress(10, "one")
    commands.cancel(ANN, ctx.task_id)
    with pytest.raises(AttemptOver):
        await ctx.complete({"answer": 1})
    await ctx.close()
    assert kinds(commands, ctx) == ["created", "started", "cancelled"]


async def test_close_saves_what_is_held(
    commands: TaskCommands, executor: ThreadPoolExecutor
) -> None:
    ctx = attempt_of(commands, executor)
    await ctx.progress(30, "before failing")
    await ctx.close()
    assert kinds(commands, ctx) == ["created", "started", "progress"]


async def test_a_held_report_is_saved_once_when_it_is_due_in_the_attempts_trace(
    commands: TaskCommands, executor: ThreadPoolExecutor
) -> None:
    ctx = attempt_of(commands, executor, hold_at_most=0.01)
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with tracing.span("worker attempt", parent) as span:
        await ctx.progress(30, "half way")
        await ctx.progress(40, "further")  # due with the first: one timer for both
    await wait_until(lambda: kinds(commands, ctx) == ["created", "started", "progress", "progress"])
    events = [e.event for e in commands.history(SYSTEM, ctx.task_id)]
    assert [getattr(e, "trace", None) for e in events[2:]] == [span.header, span.header]
    assert [e.progress for e in events[2:]] == [30, 40]
    await ctx.progress(50, "after the first save")  # held again: a new timer
    await wait_until(lambda: len(kinds(commands, ctx)) == 5)
    await ctx.close()
    assert kinds(commands, ctx) == ["created", "started", "progress", "progress", "progress"]


async def test_close_calls_off_the_timer_of_what_it_saves(
    commands: TaskCommands, executor: ThreadPoolExecutor
) -> None:
    ctx = attempt_of(commands, executor, hold_at_most=0.05)
    await ctx.progress(30, "held")
    await ctx.close()  # saves it now
    assert kinds(commands, ctx) == ["created", "started", "progress"]
    await ctx.progress(40, "after close")  # held again: a timer close must call off
    assert ctx._hold_timer is not None
    await ctx.close()
    assert ctx._hold_timer is None
    assert kinds(commands, ctx) == ["created", "started", "progress", "progress"]
