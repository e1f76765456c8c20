"""An attempt's reports that happen together are one append: the same events, in the same order,
fenced as before (issue 17: the worker's CPU per task)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID

import psycopg
import pytest

from agenttasks.servers.nats import EmbeddedNats
from agenttasks.servers.postgres import EmbeddedPostgres, create_database
from agenttasks.workers.context import AgentContext
from agenttasks.workers.errors import AgentError
from agenttasks.workers.runtime import Worker
from tests.integration.stack import Stack, running_stack
from tests.integration.worker_harness import create, finished, kinds, running_worker
from tests.waiting import wait_until

DATA = {"data": {"x": [1, 2, 3]}}


@pytest.fixture(scope="module")
async def running(
    postgres: EmbeddedPostgres, module_nats: EmbeddedNats
) -> AsyncIterator[tuple[Stack, Worker]]:
    url = create_database(postgres.url, "test_worker_appends")
    async with running_stack(url, module_nats) as stack, running_worker(stack) as worker:
        yield stack, worker


@pytest.fixture(autouse=True)
def real_agents(running: tuple[Stack, Worker]) -> Iterator[None]:
    """Each test starts with the real (offline) agents, whatever the one before swapped in."""
    worker = running[1]
    real = dict(worker._agents)
    yield
    worker._agents = real


def transactions(stack: Stack, task_id: UUID) -> list[str]:
    """The id of the transaction that stored each of the task's events, in order (xmin)."""
    table = stack.store.recorder.events_table_name  # type: ignore[attr-defined]
    with psycopg.connect(stack.database_url) as connection:
        rows = connection.execute(
            f"SELECT xmin::text FROM {table} WHERE originator_id = %s ORDER BY originator_version",
            (task_id,),
        ).fetchall()
    return [row[0] for row in rows]


async def test_an_offline_summary_stores_progress_model_call_and_result_in_one_append(
    running: tuple[Stack, Worker],
) -> None:
    stack, _ = running
    task_id = create(stack, "summary", {"content": "Some text.", "max_length": 50})
    assert (await finished(stack, task_id)).status == "completed"
    assert kinds(stack, task_id) == ["created", "started", "progress", "model_call", "completed"]
    created, started, *together = transactions(stack, task_id)
    assert len(set(together)) == 1  # one append for the three
    assert len({created, started, together[0]}) == 3  # the start is its own, before the agent runs


async def test_progress_with_nothing_after_it_is_stored_while_the_agent_still_runs(
    running: tuple[Stack, Worker],
) -> None:
    stack, worker = running
    release = asyncio.Event()

    async def waits(ctx: AgentContext) -> dict[str, Any]:
        await ctx.progress(30, "halfway")
        await release.wait()
        return {"done": True}

    worker._agents = dict.fromkeys(worker._agents, waits)
    task_id = create(stack, "data_analysis", DATA)
    await wait_until(lambda: "progress" in kinds(stack, task_id))
    assert kinds(stack, task_id)[-1] == "progress"  # stored while the agent waits
    release.set()
    assert (await finished(stack, task_id)).status == "completed"
    assert kinds(stack, task_id) == ["created", "started", "progress", "completed"]


async def test_progress_held_when_the_agent_fails_is_stored_before_the_failure(
    running: tuple[Stack, Worker],
) -> None:
    stack, worker = running

    async def fails(ctx: AgentContext) -> dict[str, Any]:
        await ctx.progress(40, "reading")
        raise AgentError("bad_input", "the data has no numbers")

    worker._agents = dict.fromkeys(worker._agents, fails)
    task_id = create(stack, "data_analysis", DATA, max_retries=0)
    assert (await finished(stack, task_id)).status == "failed"
    assert kinds(stack, task_id) == ["created", "started", "progress", "failed"]
