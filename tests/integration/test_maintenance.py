"""The maintenance role on real servers: pending tasks no worker serves expire, one leader runs
the jobs (a standby takes over when it is killed), lost workers are marked.

One stack (Postgres database, NATS, relay, task projector) for the module; the leadership test
runs two `agenttasks maintain` processes, the others run the role's parts in the test's loop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from agenttasks import bootstrap
from agenttasks.application.tasks import SYSTEM, Actor, NewTask
from agenttasks.domain.rules import RuleViolation
from agenttasks.domain.task import Task
from agenttasks.maintenance.jobs import ExpirePending, WorkerLiveness
from agenttasks.maintenance.leader import LOCK_KEY, Maintenance
from agenttasks.maintenance.scheduler import Job, Scheduler, Swept
from agenttasks.projections.pending_queries import StalePending
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.servers.postgres import EmbeddedPostgres, create_database
from agenttasks.settings import Settings
from agenttasks.workers import heartbeats
from tests.integration.stack import Stack, running_stack
from tests.waiting import wait_for_value, wait_until

ANN = Actor("ann")
TTL = timedelta(seconds=1)
NEWS = {"content": "The tide came in twice today.", "urls": [], "max_length": 50}


@pytest.fixture(scope="module")
def module_database(postgres: EmbeddedPostgres) -> str:
    return create_database(postgres.url, "test_maintenance")


@pytest.fixture(scope="module")
async def stack(module_database: str, module_nats: EmbeddedNats) -> AsyncIterator[Stack]:
    bootstrap.ensure_read_models(module_database)  # what `migrate` (or the API) does first
    async with running_stack(module_database, module_nats) as running:
        yield running


def settings(stack: Stack, **changes: Any) -> Settings:
    base = Settings(
        database_url=stack.database_url,
        pending_ttl=TTL,
        maintenance_expiry_seconds=1,
        maintenance_liveness_seconds=1,
    )
    return base.with_(**changes)


def create(stack: Stack) -> UUID:
    return stack.commands.create(ANN, NewTask("Tides", "summary", NEWS)).task_id


def row(stack: Stack, task_id: UUID) -> tuple[Any, ...]:
    found = stack.rows(
        f"SELECT status, error_kind, error_message FROM tasks WHERE id = '{task_id}'"
    )
    return found[0] if found else ("missing", None, None)


async def expired(stack: Stack, task_id: UUID) -> tuple[Any, ...]:
    return await wait_for_value(lambda: row(stack, task_id), lambda r: r[0] == "failed")


@asynccontextmanager
async def leading(maintenance: Maintenance) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    running = asyncio.create_task(maintenance.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await running


async def test_a_pending_task_that_no_worker_serves_expires(stack: Stack) -> None:
    task_id = create(stack)
    async with (
        bootstrap.maintenance(settings(stack), stack.store) as maintenance,
        leading(maintenance),
    ):
        status, kind, message = await expired(stack, task_id)
    assert (status, kind) == ("failed", "expired")
    assert message.startswith("no worker started the task within 1s of it being queued")
    history = [item.event for item in stack.commands.history(SYSTEM, task_id)]
    assert isinstance(history[-1], Task.Failed)
    assert history[-1].retryable is False
    assert len(history) == 2  # created, failed: not retried


async def test_only_the_leader_runs_jobs_and_a_standby_takes_over(stack: Stack) -> None:
    async with (
        bootstrap.maintenance(settings(stack), stack.store) as first,
        bootstrap.maintenance(settings(stack), stack.store) as second,
        leading(first) as stop_first,
    ):
        await wait_until(lambda: first.is_leader)
        async with leading(second):
            await wait_until(lambda: first.scheduler.runs["expiry"] >= 2)
            assert not second.is_leader
            assert set(second.scheduler.runs.values()) == {0}
            stop_first.set()  # the leader goes away: its session, and the lock, with it
            await wait_until(lambda: second.is_leader)
            task_id = create(stack)
            assert (await expired(stack, task_id))[1] == "expired"
            assert second.scheduler.runs["expiry"] >= 1


async def test_a_sweep_expires_at_most_its_batch_and_leaves_started_tasks(stack: Stack) -> None:
    ids = [create(stack) for _ in range(3)]
    started = create(stack)
    await stack.projected()
    stale = StalePending(stack.database_url)
    await wait_until(
        lambda: _stale_count(stale, len(ids) + 1), explain=lambda: [row(stack, i) for i in ids]
    )
    stack.commands.start(started, 1, "worker-1")  # a worker takes it as the sweep looks
    with ThreadPoolExecutor(4) as executor:
        expiry = ExpirePending(stack.commands, stale, TTL, executor, batch=2)
        first = await expiry.sweep()
        second = await expiry.sweep()
        third = await expiry.sweep()
    # The read model may or may not show the started task as pending yet; the aggregate refuses
    # to expire it either way, and the sweep goes on with the others.
    assert first.done + second.done + third.done == 3
    assert max(first.done, second.done, third.done) <= 2
    # The read model may still show the first sweep's tasks pending: the next one passes over
    # them rather than spend its batch on refusals.
    assert second.done >= 1
    assert first.more or first.done < 2  # a full batch says so: the next sweep follows at once
    assert stack.commands.get(SYSTEM, started).status == "running"
    with pytest.raises(RuleViolation):
        stack.commands.expire(started, 1, datetime.now(UTC), "late")
    assert {stack.commands.get(SYSTEM, i).error_kind for i in ids} == {"expired"}


async def _stale_count(stale: StalePending, at_least: int) -> bool:
    return len(await stale.find(TTL, 100)) >= at_least


async def test_a_worker_whose_heartbeat_went_silent_is_marked_lost(stack: Stack) -> None:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(stack.database_url, open=False)
    await pool.open()
    try:
        silent = heartbeats.Heartbeats(
            pool, heartbeats.WorkerIdentity("host:1:silent", ("summary",), 8), every=5
        )
        beating = heartbeats.Heartbeats(
            pool, heartbeats.WorkerIdentity("host:2:beating", ("summary",), 8), every=5
        )
        await silent.ensure_table()
        await silent.beat([])
        await beating.beat([])
        async with pool.connection() as connection:
            # The silent one beat last a minute ago; a third ended two days ago.
            await connection.execute(
                "UPDATE worker_heartbeats SET last_heartbeat = now() - interval '1 minute'"
                " WHERE worker_id = 'host:1:silent'"
            )
            await connection.execute(
                "INSERT INTO worker_heartbeats SELECT 'host:3:gone', host, pid, task_types,"
                " concurrency, heartbeat_seconds, started_at, now() - interval '2 days',"
                " 'stopped', now() - interval '2 days', running FROM worker_heartbeats"
                " WHERE worker_id = 'host:2:beating'"
            )
        liveness = WorkerLiveness(
            stack.database_url,
            lost_after=timedelta(seconds=30),
            forget_after=timedelta(days=1),
        )
        swept = await liveness.sweep()
    finally:
        await pool.close()
    states = dict(stack.rows("SELECT worker_id, state FROM worker_heartbeats"))
    assert states == {"host:1:silent": "lost", "host:2:beating": "alive"}
    assert swept.done == 2  # one marked, one removed


# Two processes ------------------------------------------------------------------------------


def maintain_process(database_url: str, home: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTTASKS_", "OPENAI_"))}
    env.update(
        AGENTTASKS_DATABASE_URL=database_url, AGENTTASKS_HOME=str(home),
        AGENTTASKS_PENDING_TTL="1s", AGENTTASKS_MAINTENANCE_EXPIRY_SECONDS="1",
    )  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "agenttasks.cli", "maintain"],
        env=env, stdout=(home / "maintain.log").open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def leader_pid(database_url: str) -> int | None:
    """The pid in the lock holder's application_name (`agenttasks-maintain host:pid`)."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        found = connection.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
            " WHERE l.locktype = 'advisory' AND l.granted"
            " AND ((l.classid::bigint << 32) | l.objid::bigint) = %s",
            (LOCK_KEY,),
        ).fetchone()
    return int(found[0].rsplit(":", 1)[1]) if found else None


async def test_a_standby_process_takes_over_when_the_leader_is_killed(
    stack: Stack, tmp_path: Path
) -> None:
    processes = [maintain_process(stack.database_url, tmp_path) for _ in range(2)]
    log = tmp_path / "maintain.log"
    try:
        first = await wait_for_value(lambda: leader_pid(stack.database_url), bool, 30)
        assert first in {p.pid for p in processes}, log.read_text()
        # The other one has tried the lock and waits: a standby, not a late starter.
        await wait_until(lambda: "standing by" in log.read_text(), 30, explain=log.read_text)
        doomed = next(p for p in processes if p.pid == first)
        os.kill(first, signal.SIGKILL)
        doomed.wait(10)
        survivor = next(p for p in processes if p is not doomed)
        await wait_for_value(
            lambda: leader_pid(stack.database_url), lambda pid: pid == survivor.pid, 30
        )
        task_id = create(stack)  # the new leader runs the jobs
        assert (await expired(stack, task_id))[1] == "expired", log.read_text()
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(15)
    assert survivor.returncode == 0, log.read_text()


def lock_backend(database_url: str) -> int | None:
    """The Postgres backend pid holding the maintenance lock."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        found = connection.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND ((classid::bigint << 32) | objid::bigint) = %s",
            (LOCK_KEY,),
        ).fetchone()
    return int(found[0]) if found else None


async def test_a_leader_whose_session_is_cut_leads_again_on_a_new_one(stack: Stack) -> None:
    async with (
        bootstrap.maintenance(settings(stack), stack.store) as maintenance,
        leading(maintenance),
    ):
        await wait_until(lambda: maintenance.is_leader)
        backend = await wait_for_value(lambda: lock_backend(stack.database_url), bool)
        with psycopg.connect(stack.database_url, autocommit=True) as connection:
            connection.execute("SELECT pg_terminate_backend(%s)", (backend,))
        await wait_for_value(
            lambda: lock_backend(stack.database_url), lambda pid: pid not in (None, backend)
        )
        await wait_until(lambda: maintenance.is_leader)
        task_id = create(stack)
        assert (await expired(stack, task_id))[1] == "expired"


async def test_the_leader_purges_finished_tasks_past_the_retention(stack: Stack) -> None:
    task_id = create(stack)
    stack.commands.start(task_id, 1, "worker-1")
    stack.commands.complete(task_id, 1, {"summary": "Tides."})
    young = create(stack)  # pending: never purged, whatever its age
    await stack.projected()
    retention = settings(
        stack, pending_ttl=None, retention=timedelta(seconds=1), maintenance_purge_seconds=1
    )
    async with (
        bootstrap.maintenance(retention, stack.store) as maintenance,
        leading(maintenance),
    ):
        assert [job.name for job in maintenance.scheduler.jobs] == [
            "watchdog",
            "purge",
            "liveness",
            "ledger",
        ]
        await wait_until(lambda: not stack.store.recorder.select_events(task_id))
    assert stack.commands.get(SYSTEM, young).status == "pending"
    assert maintenance.scheduler.runs["purge"] >= 1


async def test_a_leader_whose_session_ends_mid_round_runs_no_further_job(stack: Stack) -> None:
    # Both jobs due at once (a round); the first ends the lock's session under the leader, as a
    # failover or an operator's pg_terminate_backend would. The leader used to check its session
    # only between rounds, so the second job ran in the same round without the lock.
    cut: list[int] = []
    seen: list[int | None] = []

    async def end_the_session() -> Swept:
        if not cut:
            backend = await asyncio.to_thread(lock_backend, stack.database_url)
            assert backend is not None
            await asyncio.to_thread(terminate, stack.database_url, backend)
            cut.append(backend)
        return Swept(0)

    async def look_at_the_lock() -> Swept:
        seen.append(await asyncio.to_thread(lock_backend, stack.database_url))
        return Swept(0)

    jobs = [Job("cut", 3600, end_the_session), Job("look", 3600, look_at_the_lock)]
    maintenance = Maintenance(stack.database_url, Scheduler(jobs), name="test-mid-round")
    async with leading(maintenance):
        await wait_until(lambda: bool(seen))
    assert seen[0] is not None, "the job after the cut ran without the lock"
    assert seen[0] != cut[0]  # on the new session, after leading again


def terminate(database_url: str, backend: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as connection:
        # With a timeout it returns once the backend is gone, and its lock with it.
        connection.execute("SELECT pg_terminate_backend(%s, 10000)", (backend,))
