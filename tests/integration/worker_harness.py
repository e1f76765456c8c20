"""Workers (and their watchdog) running in the test's event loop against a running stack."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any
from uuid import UUID

import nats
from nats.js.errors import NotFoundError

from agenttasks import bootstrap
from agenttasks.application.tasks import SYSTEM, Actor, NewTask
from agenttasks.bus.connection import connect
from agenttasks.bus.messages import STREAM
from agenttasks.domain.rules import PRIORITIES, TASK_TYPES
from agenttasks.domain.task import Task
from agenttasks.domain.updates import KINDS
from agenttasks.settings import Settings
from agenttasks.workers.fetch import Fetcher
from agenttasks.workers.limits import Limits
from agenttasks.workers.llm import LanguageModel
from agenttasks.workers.runtime import Worker, WorkerOptions
from tests.integration.stack import Stack
from tests.waiting import wait_until

ANN = Actor("ann")


@asynccontextmanager
async def running_worker(
    stack: Stack,
    *,
    options: WorkerOptions | None = None,
    llm: LanguageModel | None = None,
    allowed_hosts: Iterable[str] = ("127.0.0.1",),
    engine: str = "auto",
    watchdog_every: float = 0.2,
    agents: dict[str, Any] | None = None,
    limits: Limits | None = None,
    fetcher: Fetcher | None = None,
    settings: Settings | None = None,
) -> AsyncIterator[Worker]:
    """A worker with short leases (tests wait for redeliveries) and a watchdog, built as
    `agenttasks worker` builds them (`settings`: default, the stack's database alone)."""
    options = options or WorkerOptions(ack_wait=2.0)
    bus = await connect(stack.nats.url_for("worker"), f"test-worker-{options.worker_id}")
    try:
        async with bootstrap.worker(
            settings or Settings(database_url=stack.database_url),
            stack.store,
            bus,
            options,
            llm=llm,
            fetcher=fetcher or Fetcher(allowed_hosts),
            engine=engine,
            agents=agents,
            limits=limits,
            threads=16,
            watchdog_every=watchdog_every,
        ) as (worker, watchdog):
            stop = asyncio.Event()
            running = asyncio.gather(worker.run(stop), watchdog.run(stop))
            try:
                yield worker
            finally:
                stop.set()
                await running
    finally:
        await bus.close()


def with_options(**changes: Any) -> WorkerOptions:
    return replace(WorkerOptions(ack_wait=2.0), **changes)


def create(
    stack: Stack, task_type: str, config: dict[str, Any], actor: Actor = ANN, **extra: Any
) -> UUID:
    commands = stack.commands
    return commands.create(
        actor, NewTask(f"a {task_type} task", task_type, config, **extra)
    ).task_id


def task(stack: Stack, task_id: UUID) -> Task:
    return stack.commands.get(SYSTEM, task_id)


async def finished(stack: Stack, task_id: UUID, within: float = 30.0) -> Task:
    """Waits until the task is completed, failed or cancelled, and returns it."""
    await wait_until(
        lambda: task(stack, task_id).status in ("completed", "failed", "cancelled"), within
    )
    return task(stack, task_id)


def kinds(stack: Stack, task_id: UUID) -> list[str]:
    """The task's event kinds in order: created, started, progress, ..."""
    return [KINDS[type(e.event)] for e in stack.commands.history(SYSTEM, task_id)]


def events(stack: Stack, task_id: UUID) -> list[Any]:
    return [e.event for e in stack.commands.history(SYSTEM, task_id)]


async def settled(stack: Stack, within: float = 30.0) -> None:
    """Waits until no worker has anything left to do: every stored event is published and every
    message of the workers' consumers delivered and acknowledged.

    A worker acknowledges a message only once its attempt has ended in the event store, and any
    further attempt needs a new stored event (a retry, a takeover) and so a new message: once
    this holds, nothing more happens without a new command. It is the positive signal a test
    waits for before asserting that something did *not* happen.
    """
    # nats-py directly: the test observes the server's own counts, not what our code reports.
    nc = await nats.connect(stack.nats.url_for("worker"))
    js = nc.jetstream()

    async def idle(name: str) -> bool | None:
        try:
            info = await js.consumer_info(STREAM, name)
        except NotFoundError:
            return None  # no worker ever bound it: nothing to deliver there
        return not info.num_pending and not info.num_ack_pending

    async def nothing_left() -> bool:
        newest = stack.store.recorder.max_notification_id() or 0
        if stack.relay.published_position < newest:
            return False
        found = False
        for task_type in TASK_TYPES:
            for priority in PRIORITIES:
                state = await idle(f"worker-{task_type}-{priority}")
                if state is False:
                    return False
                found = found or state is not None
        # None found at all: the consumers are named otherwise now, and this would prove nothing.
        return found

    try:
        await wait_until(nothing_left, within, every=0.02, explain=lambda: "workers still busy")
    finally:
        await nc.close()
