"""`agenttasks migrate` on a fresh database and NATS: twice in a row, twice at once, then the roles."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

from agenttasks.application.tasks import Actor, NewTask
from agenttasks.bus.connection import connect
from agenttasks.bus.messages import STREAM
from agenttasks.domain.rules import TASK_TYPES
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.workers.backlog import PRIORITY_ORDER
from agenttasks.workers.consumers import bind_all, consumer_name
from tests.integration.stack import running_stack

TABLES = (
    "agenttasks_events",  # the event store
    "projection_tracking",
    "tasks",
    "templates",
    "task_statistics",
    "event_quarantine",
    "relay_status",
    "projection_health",
)


def environment(database_url: str, nats: EmbeddedNats, home: Path) -> dict[str, str]:
    """As compose configures it: AGENTTASKS_* variables only, one NATS URL per user it acts as."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "AGENTTASKS_HOME": str(home),
        "AGENTTASKS_DATABASE_URL": database_url,
        "AGENTTASKS_NATS_RELAY_URL": nats.url_for("relay"),
        "AGENTTASKS_NATS_WORKER_URL": nats.url_for("worker"),
    }


def start_migrate(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "agenttasks.cli", "migrate"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def table_names(database_url: str) -> set[str]:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {row[0] for row in rows}


async def test_migrate_twice_at_once_then_again_then_the_roles_start(
    database_url: str, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    env = environment(database_url, nats_server, tmp_path)
    at_once = [start_migrate(env), start_migrate(env)]
    results = [finished(process) for process in at_once]
    for status, out, err in results:
        assert status == 0, err
        assert "migrated:" in out
    created = sorted(int(out.split("(")[-1].split()[0]) for _, out, _ in results)
    every = len(TASK_TYPES) * len(PRIORITY_ORDER)
    assert created == [0, every], "the lock made the second one find everything in place"

    again = finished(start_migrate(env))
    assert again[0] == 0, again[2]
    assert f"{every} worker consumers (0 created)" in again[1]

    tables = table_names(database_url)
    assert set(TABLES) <= tables, sorted(tables)
    bus = await connect(nats_server.url_for("worker"), "test-migrate-check")
    try:
        info = await bus.js.stream_info(STREAM)
        assert info.config.num_replicas == 1
        for priority in PRIORITY_ORDER:
            for task_type in TASK_TYPES:
                assert await bus.has_consumer(consumer_name(task_type, priority))
    finally:
        await bus.close()

    # The roles start on what migrate made: the relay publishes, the projector projects, and
    # a worker binding with its defaults receives the new task from migrate's consumer.
    async with running_stack(database_url, nats_server) as stack:
        written = stack.commands.create(Actor("alice"), NewTask("t", "summary", {"content": "x"}))
        await stack.projected()
        assert stack.rows(f"SELECT count(*) FROM tasks WHERE id = '{written.task_id}'") == [(1,)]
        worker = await connect(nats_server.url_for("worker"), "test-migrate-worker")
        try:
            bound = await bind_all(
                worker, ("summary",), ack_wait=30.0, max_deliver=5, max_ack_pending=4000
            )
            deliveries = [d for _, consumer in bound for d in await consumer.fetch(10, wait=0.5)]
            assert len(deliveries) == 1
            assert str(written.task_id).encode() in deliveries[0].data
            for _, consumer in bound:
                await consumer.close()
        finally:
            await worker.close()


async def test_migrate_without_a_reachable_postgres_says_so(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AGENTTASKS_HOME": str(tmp_path),
        "AGENTTASKS_DATABASE_URL": f"postgresql:///nothing?host={tmp_path}",
        "AGENTTASKS_NATS_URL": "nats://127.0.0.1:1",
    }
    status, _, err = finished(start_migrate(env))
    assert status == 2
    assert "agenttasks: cannot connect to Postgres" in err
    assert "Traceback" not in err
