"""A lock on the events table never stops every write: appends wait AGENTTASKS_APPEND_LOCK_TIMEOUT.

Before, the store's append ran with lock_timeout '0s' (wait for ever): a session holding a
conflicting lock (an open deletion, an operator's psql) held every create, start and
completion until it ended. Now a create answers 503 problem+json with Retry-After and stores
nothing, a start fails at once (the worker offers its message again), and a completion is
tried again until the lock goes: the attempt completes once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest

from agenttasks.application.append_lock import AppendLockTimeout
from agenttasks.application.bus_payloads import mapper_for
from agenttasks.application.loop_commit import LoopCommitter
from agenttasks.application.store import history
from agenttasks.application.tasks import Actor, NewTask
from agenttasks.bus.consumers import Delivery
from agenttasks.bus.messages import encode
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.servers.postgres import EmbeddedPostgres, create_database
from agenttasks.settings import Settings, SettingsError
from agenttasks.workers import context as agent_context
from agenttasks.workers.context import AgentContext
from agenttasks.workers.intake import job_from, task_from_created
from agenttasks.workers.loop_start import LoopStarts
from agenttasks.workers.runtime import Worker
from tests.integration.api_client import bearer, serving, settings_for
from tests.integration.stack import Stack, running_stack
from tests.integration.worker_harness import create, finished, kinds, running_worker, with_options
from tests.waiting import wait_until

ALICE = bearer("alice")
TASKS = "/api/v1/utils/ai-tasks/"
SUMMARY = {"title": "Summarise", "task_type": "summary", "task_config": {"content": "Some text."}}
WAIT = timedelta(milliseconds=200)  # this module's lock timeout: each refusal waits this long


@pytest.fixture(scope="module")
async def running(
    postgres: EmbeddedPostgres, module_nats: EmbeddedNats
) -> AsyncIterator[tuple[Stack, Worker, str]]:
    url = create_database(postgres.url, "test_append_lock_timeout")
    settings = settings_for(url, module_nats).with_(append_lock_timeout=WAIT)
    # The worker takes data_analysis only: summary tasks stay pending for the start test.
    options = with_options(types=("data_analysis",))
    async with (
        running_stack(url, module_nats, settings=settings) as stack,
        running_worker(stack, settings=settings, options=options) as worker,
        serving(settings) as api,
    ):
        yield stack, worker, api


@pytest.fixture
def real_agents(running: tuple[Stack, Worker, str]) -> Iterator[None]:
    """The worker's real agents again after a test that swapped in its own."""
    worker = running[1]
    real = dict(worker._agents)
    yield
    worker._agents = real


@asynccontextmanager
async def events_table_locked(stack: Stack) -> AsyncIterator[None]:
    """What a second session (an operator's psql) holds: the lock every append needs."""
    table = stack.store.recorder.events_table_name  # type: ignore[attr-defined]
    async with await psycopg.AsyncConnection.connect(stack.database_url) as holder:
        await holder.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            await holder.rollback()


def newest(stack: Stack) -> int:
    return stack.store.recorder.max_notification_id() or 0


def test_the_append_lock_timeout_has_a_default_bounds_and_reaches_the_store_settings() -> None:
    assert Settings().append_lock_timeout == timedelta(seconds=5)
    read = Settings.from_env({"AGENTTASKS_APPEND_LOCK_TIMEOUT": "2m"})
    assert read.append_lock_timeout == timedelta(minutes=2)
    for refused in ("off", "0s", "6m", "1h", "5", "-1s", "soon"):
        with pytest.raises(SettingsError, match="AGENTTASKS_APPEND_LOCK_TIMEOUT"):
            Settings.from_env({"AGENTTASKS_APPEND_LOCK_TIMEOUT": refused})
    env = Settings(database_url="postgresql:///x", append_lock_timeout=WAIT).eventsourcing_env()
    # The library's whole seconds (never 0: that is "wait for ever"), and our milliseconds.
    assert env["POSTGRES_LOCK_TIMEOUT"] == "1"
    assert env["APPEND_LOCK_TIMEOUT_MS"] == "200"
    assert (
        Settings(database_url="postgresql:///x").eventsourcing_env()["POSTGRES_LOCK_TIMEOUT"] == "5"
    )


async def test_a_create_under_a_held_lock_answers_503_and_stores_nothing_then_succeeds(
    running: tuple[Stack, Worker, str],
) -> None:
    stack, _, api = running
    # Short client timeout: an append that waited for ever (as before) fails the test here.
    async with httpx.AsyncClient(base_url=api, timeout=10) as client:
        async with events_table_locked(stack):
            before = newest(stack)
            refused = await client.post(TASKS, json=SUMMARY, headers=ALICE)
            assert newest(stack) == before  # nothing of it was stored
        assert refused.status_code == 503
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.headers["retry-after"] == "1"
        problem = refused.json()
        assert problem["status"] == 503
        assert problem["detail"] == (
            "the event store is busy (its events table stayed locked for 0.2 s); "
            "nothing was stored, try again"
        )
        assert "canceling statement" not in refused.text  # never Postgres' or psycopg's words
        created = await client.post(TASKS, json=SUMMARY, headers=ALICE)
    assert created.status_code == 201
    assert newest(stack) > before


async def test_a_start_under_a_held_lock_fails_at_once_and_stores_nothing(
    running: tuple[Stack, Worker, str],
) -> None:
    stack = running[0]
    task_id = stack.commands.create(Actor("ann"), NewTask("t", "summary", {"content": "x"})).task_id
    first = history(stack.store, task_id)[0]
    payload = mapper_for(stack.store).map(first.event, first.position)
    assert payload is not None

    def offered() -> Any:  # the worker's copy of the task, from its Created message
        return task_from_created(job_from(Delivery(encode(payload), 1, None)))

    starts = LoopStarts(stack.store, stack.database_url)
    try:
        async with events_table_locked(stack):
            with pytest.raises(AppendLockTimeout):  # the worker naks the message on it
                await asyncio.wait_for(starts.start(offered(), first.position, "w1"), 10)
        assert kinds(stack, task_id) == ["created"]
        # The message's next delivery starts it, on the same session.
        assert await starts.start(offered(), first.position, "w1") is not None
    finally:
        await starts.close()
    assert kinds(stack, task_id) == ["created", "started"]


async def test_a_completion_under_a_held_lock_is_tried_again_and_stored_once(
    running: tuple[Stack, Worker, str], caplog: pytest.LogCaptureFixture, real_agents: None
) -> None:
    stack, worker, _ = running
    go = asyncio.Event()

    async def gated(ctx: AgentContext) -> dict[str, Any]:
        await go.wait()
        return {"done": True}

    worker._agents = dict.fromkeys(worker._agents, gated)
    task_id = create(stack, "data_analysis", {"data": {"x": [1, 2, 3]}})
    await wait_until(lambda: kinds(stack, task_id) == ["created", "started"])
    caplog.set_level(logging.WARNING, logger="agenttasks.workers.context")

    def refused_once(task: UUID = task_id) -> bool:
        return any(
            "trying again" in r.getMessage() and str(task) in r.getMessage() for r in caplog.records
        )

    async with events_table_locked(stack):
        go.set()  # the agent returns: its completion meets the lock
        await wait_until(refused_once, within=10)
    assert (await finished(stack, task_id)).status == "completed"
    assert kinds(stack, task_id) == ["created", "started", "completed"]


async def test_a_completion_refused_through_every_try_hands_the_message_back_and_runs_again(
    running: tuple[Stack, Worker, str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    real_agents: None,
) -> None:
    stack, worker, _ = running
    monkeypatch.setattr(agent_context, "LOCK_RETRY_DELAYS", (0.01,))  # two tries, not six

    async def quick(ctx: AgentContext) -> dict[str, Any]:
        return {"done": True}

    go = asyncio.Event()

    async def gated(ctx: AgentContext) -> dict[str, Any]:
        await go.wait()
        worker._agents = dict.fromkeys(worker._agents, quick)  # the next attempt just completes
        return {"done": True}

    worker._agents = dict.fromkeys(worker._agents, gated)
    task_id = create(stack, "data_analysis", {"data": {"x": [1, 2, 3]}})
    await wait_until(lambda: kinds(stack, task_id) == ["created", "started"])
    caplog.set_level(logging.WARNING, logger="agenttasks.workers.runtime")

    def handed_back() -> bool:
        return any(
            "handed back" in r.getMessage() and str(task_id) in r.getMessage()
            for r in caplog.records
        )

    async with events_table_locked(stack):
        go.set()
        await wait_until(handed_back, within=10)
        assert kinds(stack, task_id) == ["created", "started"]  # nothing of it was stored
    # The message comes again: the attempt is taken over and retried, and completes once.
    await wait_until(lambda: "completed" in kinds(stack, task_id), within=20)
    assert (await finished(stack, task_id)).status == "completed"
    taken_over = ["created", "started", "failed", "retried", "started", "completed"]
    assert kinds(stack, task_id) == taken_over  # failed as worker_lost, never twice completed


class CountingCommitter(LoopCommitter):
    """The API's loop committer, counting its appends (each one waits out the lock timeout)."""

    appends = 0

    async def _append(self, events: list[Any]) -> list[int]:
        self.appends += 1
        return await super()._append(events)


async def test_creates_queued_together_under_a_held_lock_fail_together_after_one_wait(
    running: tuple[Stack, Worker, str],
) -> None:
    stack = running[0]
    committer = CountingCommitter(stack.store, stack.database_url)
    new = NewTask("t", "summary", {"content": "x"})
    tasks = [stack.commands.build(Actor("ann"), new) for _ in range(3)]
    try:
        async with events_table_locked(stack):
            outcomes = await asyncio.gather(
                *(committer.save(t) for t in tasks), return_exceptions=True
            )
        # One batch, one append: tried one by one, each would wait the timeout again.
        assert [type(o) for o in outcomes] == [AppendLockTimeout] * 3
        assert committer.appends == 1
    finally:
        await committer.close()
