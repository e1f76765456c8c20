"""The worker runtime on real NATS and Postgres: order, fairness, retries, cancel, timeouts,
lost workers and exhausted deliveries. Agents here are small test agents (the real ones are
tested end to end in test_workers_end_to_end.py) so each test controls exactly what happens."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from agenttasks.application.tasks import Actor
from agenttasks.bus.connection import connect
from agenttasks.bus.consumers import PullConsumer
from agenttasks.bus.messages import task_subject
from agenttasks.domain.task import Task
from agenttasks.workers.context import AgentContext
from agenttasks.workers.errors import AgentError
from agenttasks.workers.retry_policy import Backoff
from agenttasks.workers.runtime import Worker
from tests.integration.stack import Stack, running_stack
from tests.integration.worker_harness import (
    create,
    events,
    finished,
    kinds,
    running_worker,
    settled,
    task,
    with_options,
)
from tests.waiting import wait_until

DATA = {"data": {"x": [1, 2, 3]}}


def using(worker: Worker, agent: Any) -> None:
    worker._agents = dict.fromkeys(worker._agents, agent)


async def published(stack: Stack) -> None:
    newest = stack.store.recorder.max_notification_id() or 0
    await wait_until(lambda: stack.relay.published_position >= newest)


async def test_urgent_tasks_start_before_high_normal_and_low_ones(
    database_url, nats_server
) -> None:
    started: list[str] = []

    async def record(ctx: AgentContext) -> dict[str, Any]:
        started.append(ctx.priority)
        return {"engine": "test"}

    async with running_stack(database_url, nats_server) as stack:
        for priority in ["low", "normal", "high", "urgent"] * 2:
            create(stack, "data_analysis", {"data": {"p": [1]}}, priority=priority)
        await published(stack)
        worker_options = with_options(concurrency=1)
        async with running_worker(stack, options=worker_options) as worker:
            using(worker, record)
            await wait_until(lambda: len(started) == 8)
    assert started == ["urgent", "urgent", "high", "high", "normal", "normal", "low", "low"]


async def test_one_users_flood_does_not_starve_another_users_task(
    database_url, nats_server
) -> None:
    order: list[str] = []

    async def record(ctx: AgentContext) -> dict[str, Any]:
        order.append(ctx.user)
        return {"engine": "test"}

    async with running_stack(database_url, nats_server) as stack:
        for _ in range(200):
            create(stack, "data_analysis", DATA, actor=Actor("flood"))
        create(stack, "data_analysis", DATA, actor=Actor("single"))
        await published(stack)
        async with running_worker(stack, options=with_options(concurrency=1)) as worker:
            using(worker, record)
            await wait_until(lambda: len(order) == 201)
    # It starts as soon as the worker has fetched it, not after the flood.
    assert order.index("single") <= 10, order[:12]


async def test_a_transient_failure_is_retried_after_a_backoff_until_it_succeeds(
    database_url, nats_server
) -> None:
    attempts: list[int] = []

    async def flaky(ctx: AgentContext) -> dict[str, Any]:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise AgentError("server_error", "upstream said 503", transient=True)
        return {"engine": "test"}

    async with running_stack(database_url, nats_server) as stack:
        options = with_options(backoff=Backoff(base=0.3, cap=5))
        async with running_worker(stack, options=options) as worker:
            using(worker, flaky)
            task_id = create(stack, "data_analysis", DATA)
            done = await finished(stack, task_id)
            await wait_until(lambda: worker.finished == 3)
        history = events(stack, task_id)
    assert done.status == "completed"
    assert attempts == [1, 2, 3]
    retried = [e for e in history if isinstance(e, Task.Retried)]
    failed = [e for e in history if isinstance(e, Task.Failed)]
    starts = [e for e in history if isinstance(e, Task.Started)]
    for fail, retry, start in zip(failed, retried, starts[1:], strict=True):
        assert retry.automatic
        assert fail.retryable
        assert retry.not_before - fail.timestamp >= timedelta(
            seconds=0.3 * 2 ** (retry.attempt - 2) / 2 - 0.01
        )
        assert start.timestamp >= retry.not_before  # the backoff was waited out


async def test_a_permanent_error_fails_the_task_without_retrying(database_url, nats_server) -> None:
    async def broken(ctx: AgentContext) -> dict[str, Any]:
        raise AgentError("invalid_input", "the data has no numbers")

    async with running_stack(database_url, nats_server) as stack:
        async with running_worker(stack) as worker:
            using(worker, broken)
            task_id = create(stack, "data_analysis", DATA)
            done = await finished(stack, task_id)
        history = kinds(stack, task_id)
    assert (done.status, done.error_kind) == ("failed", "invalid_input")
    assert "retried" not in history


async def test_retries_stop_at_max_retries(database_url, nats_server) -> None:
    async def always_down(ctx: AgentContext) -> dict[str, Any]:
        raise AgentError("network", "connection refused", transient=True)

    async with running_stack(database_url, nats_server) as stack:
        async with running_worker(
            stack, options=with_options(backoff=Backoff(base=0.05))
        ) as worker:
            using(worker, always_down)
            task_id = create(stack, "data_analysis", DATA, max_retries=2)
            await wait_until(lambda: kinds(stack, task_id).count("failed") == 3)
            await settled(stack)  # a wrong fourth attempt would have run by now
        history, status = kinds(stack, task_id), task(stack, task_id).status
    assert history.count("started") == 3
    assert status == "failed"


async def test_cancel_stops_the_running_agent_and_nothing_of_the_attempt_follows(
    database_url, nats_server
) -> None:
    running, stopped = asyncio.Event(), asyncio.Event()

    async def endless(ctx: AgentContext) -> dict[str, Any]:
        await ctx.progress(10, "working")
        running.set()
        try:
            while True:
                ctx.stream_text("more text ")
                await asyncio.sleep(0.01)  # the scenario: an agent streaming at its own pace
        finally:
            stopped.set()

    async with running_stack(database_url, nats_server) as stack:
        async with running_worker(stack) as worker:
            using(worker, endless)
            task_id = create(stack, "data_analysis", DATA)
            await asyncio.wait_for(running.wait(), 10)
            await wait_until(lambda: "result" in kinds(stack, task_id))  # partial text written
            stack.commands.cancel(Actor("ann"), task_id)
            await asyncio.wait_for(stopped.wait(), 5)
            await settled(stack)  # the attempt has ended: a wrong late event would be stored
        history = kinds(stack, task_id)
    assert history[-1] == "cancelled"
    assert "result" in history  # it was streaming when cancelled


async def test_a_task_past_its_timeout_fails_as_timed_out(database_url, nats_server) -> None:
    async def slow(ctx: AgentContext) -> dict[str, Any]:
        await asyncio.sleep(60)  # the scenario: an agent far slower than the task's timeout
        return {}

    async with running_stack(database_url, nats_server) as stack, running_worker(stack) as worker:
        using(worker, slow)
        task_id = create(stack, "data_analysis", DATA, timeout_seconds=1)
        done = await finished(stack, task_id)
    assert (done.status, done.error_kind) == ("failed", "timeout")


async def test_the_watchdog_fails_a_task_whose_worker_vanished_past_its_timeout(
    database_url, nats_server
) -> None:
    async with running_stack(database_url, nats_server) as stack:
        task_id = create(stack, "summary", {"content": "text"}, timeout_seconds=1)
        stack.commands.start(task_id, 1, "a-worker-that-died")
        await stack.projected()
        async with running_worker(stack, options=with_options(types=("custom",))):
            done = await finished(stack, task_id)
    assert (done.status, done.error_kind) == ("failed", "timeout")


async def test_a_lost_workers_task_is_taken_over_as_a_new_attempt_and_completes_once(
    database_url, nats_server
) -> None:
    async def quick(ctx: AgentContext) -> dict[str, Any]:
        return {"engine": "test", "attempt": ctx.attempt}

    async with running_stack(database_url, nats_server) as stack:
        options = with_options(ack_wait=1.0)
        task_id = create(stack, "data_analysis", DATA)
        await published(stack)
        # A worker that takes the message, starts the attempt, then dies (no ack, no heartbeat).
        ghost_bus = await connect(stack.nats.url_for("worker"), "ghost")
        ghost = await PullConsumer.bind(
            ghost_bus.js,
            "worker-data_analysis-normal",
            subjects=[
                task_subject(task_type="data_analysis", priority="normal", kind=k)
                for k in ("created", "retried")
            ],
            ack_wait=1.0,
            max_deliver=5,
            max_ack_pending=4000,
        )
        assert len(await ghost.fetch(1, wait=5)) == 1
        stack.commands.start(task_id, 1, "ghost")
        await ghost_bus.close()
        async with running_worker(stack, options=options) as worker:
            using(worker, quick)
            done = await finished(stack, task_id)
            await settled(stack)  # every offer of the task handled: a second one would show
        history = events(stack, task_id)
    assert done.status == "completed"
    assert done.result_data == {"engine": "test", "attempt": 2}
    lost = [e for e in history if isinstance(e, Task.Failed)]
    assert [(e.attempt, e.error_kind) for e in lost] == [(1, "worker_lost")]
    assert [type(e).__name__ for e in history].count("Completed") == 1


async def test_a_message_out_of_deliveries_fails_its_task_with_the_reason(
    database_url, nats_server
) -> None:
    async with running_stack(database_url, nats_server) as stack:
        task_id = create(stack, "summary", {"content": "text"})
        await published(stack)
        options = with_options(types=("custom",), max_deliver=2, ack_wait=0.5)
        async with running_worker(stack, options=options):
            # Workers that crash before starting the task, twice.
            bus = await connect(stack.nats.url_for("worker"), "crashing")
            consumer = await PullConsumer.bind(
                bus.js,
                "worker-summary-normal",
                subjects=[
                    task_subject(task_type="summary", priority="normal", kind=k)
                    for k in ("created", "retried")
                ],
                ack_wait=0.5,
                max_deliver=2,
                max_ack_pending=4000,
            )
            assert len(await consumer.fetch(1, wait=5)) == 1
            redelivered = await consumer.fetch(1, wait=5)
            assert [d.delivered for d in redelivered] == [2]
            # The server gives up on the message when it would deliver it a third time.
            assert await consumer.fetch(1, wait=2) == []
            done = await finished(stack, task_id)
            await bus.close()
    assert (done.status, done.error_kind) == ("failed", "delivery_exhausted")
