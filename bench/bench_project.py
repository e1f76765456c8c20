"""The projector's CPU per create, applied directly: every read model over summary lifecycles.

No bus, no worker: stream messages as the relay publishes them (created, started, progress,
model_call, completed; five a task, tasks overlapping as under load) are handed to
`apply_together` in batches of B, on one connection, as the live projector does. Prints the
client's CPU (this process) and its Postgres backend's CPU (/proc, Linux) per create, the wall
time and the statements sent per batch. For a before/after, run the same script with
PYTHONPATH pointing at the other tree's src/ (it imports agenttasks from there).

    .venv/bin/python bench/bench_project.py --tasks 600 --batch 1,5,10
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg

from agenttasks import bootstrap
from agenttasks.bus.messages import TaskEvent, encode
from agenttasks.projections.runner import ProjectionRunner, apply_together
from agenttasks.servers.postgres import create_database, start_postgres

KINDS = ("created", "started", "progress", "model_call", "completed")
STATUS = {"created": "pending", "completed": "completed"}
BASE = datetime(2026, 12, 1, tzinfo=UTC)


class Message:
    """A stream message as the runner reads it."""

    def __init__(self, data: bytes, sequence: int) -> None:
        self.data = data
        self.sequence = sequence
        self.delivered = 1


def _data(kind: str) -> dict[str, Any]:
    if kind == "created":
        return {
            "title": "Summarise", "task_type": "summary", "task_config": {"text": "x" * 200},
            "priority": "normal", "created_by": "bench", "max_retries": 3,
            "timeout_seconds": 60, "template_id": None, "template_version": None,
        }  # fmt: skip
    if kind == "started":
        return {"attempt": 1, "worker_id": "w1"}
    if kind == "model_call":
        return {
            "attempt": 1, "step": 1, "model": "offline", "provider": "offline",
            "prompt_tokens": 120, "completion_tokens": 30, "cached_tokens": 0, "usage": "{}",
            "latency_ms": 0, "cost_usd": "0.0001", "price_source": "table",
            "price_version": None,
        }  # fmt: skip
    if kind == "completed":
        return {"attempt": 1, "result_data": {"summary": "Short.", "usage": {"prompt_tokens": 120}}}
    return {"attempt": 1}


def stream(tasks: int, first_position: int) -> list[Message]:
    """`tasks` lifecycles, the i-th task's k-th event at tick i + k (five tasks at once)."""
    ids = [str(uuid4()) for _ in range(tasks)]
    ticks: dict[int, list[tuple[int, int]]] = {}
    for i in range(tasks):
        for k in range(len(KINDS)):
            ticks.setdefault(i + k, []).append((i, k))
    messages = []
    position = first_position
    for tick in sorted(ticks):
        for i, k in ticks[tick]:
            kind = KINDS[k]
            event = TaskEvent(
                position=position, task_id=ids[i], type=kind, version=k + 1,
                timestamp=BASE + timedelta(milliseconds=position), user="bench",
                task_type="summary", priority="normal",
                update_type="progress" if kind == "progress" else "status",
                status=STATUS.get(kind, "running"), progress=100 if kind == "completed" else 55,
                message="", data=_data(kind),
            )  # fmt: skip
            messages.append(Message(encode(event), position))
            position += 1
    return messages


def _backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(url: str, tasks: int, batch: int) -> tuple[float, float, float, float]:
    """(client ms, backend ms, wall ms) per create, and statements per batch."""
    with psycopg.connect(url) as connection:
        runners = [ProjectionRunner(p, url) for p in bootstrap.projections().values()]
        for runner in runners:
            runner.prepare(connection)
        # Warm: a few hundred tasks so the tables, caches and prepared statements are there.
        warm = stream(200, 1)
        for start in range(0, len(warm), batch):
            apply_together(runners, connection, warm[start : start + batch])  # type: ignore[arg-type]
        messages = stream(tasks, len(warm) + 1)  # positions and stream sequences coincide
        backend = int(connection.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
        statements = _statements(connection)
        cpu0, backend0, wall0 = time.process_time(), _backend_cpu(backend), time.perf_counter()
        batches = 0
        for start in range(0, len(messages), batch):
            apply_together(runners, connection, messages[start : start + batch])  # type: ignore[arg-type]
            batches += 1
        cpu, back, wall = (
            time.process_time() - cpu0,
            _backend_cpu(backend) - backend0,
            time.perf_counter() - wall0,
        )
        sent = _statements(connection) - statements
    return cpu * 1000 / tasks, back * 1000 / tasks, wall * 1000 / tasks, sent / batches


def _statements(connection: psycopg.Connection[Any]) -> int:
    # pg_stat_statements is not loaded on the embedded server: count what psycopg sends.
    return getattr(connection, "_bench_sent", 0)


def _count_statements() -> None:
    original = psycopg.Cursor.execute

    def execute(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        conn = self.connection
        conn._bench_sent = getattr(conn, "_bench_sent", 0) + 1
        return original(self, query, params, **kwargs)

    psycopg.Cursor.execute = execute  # type: ignore[method-assign]


def main() -> None:
    """Runs the apply for each batch size and prints one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=600)
    parser.add_argument("--batch", default="1,5,10", help="events per batch, comma-separated")
    parser.add_argument("--database-url", help="an existing server (default: a fresh one)")
    parser.add_argument("--count-statements", action="store_true", help="(adds Python per call)")
    args = parser.parse_args()
    if args.count_statements:
        _count_statements()
    with tempfile.TemporaryDirectory() as directory:
        server = None
        url = args.database_url
        if url is None:
            server = start_postgres(Path(directory) / "pg")
            url = server.url
        try:
            for n, size in enumerate(int(b) for b in args.batch.split(",")):
                database = create_database(url, f"bench_project_{os.getpid()}_{n}")
                client, backend, wall, sent = run(database, args.tasks, size)
                print(
                    f"B={size:<3} client {client:.3f} ms/create, backend {backend:.3f} ms/create,"
                    f" wall {wall:.3f} ms/create, statements/batch {sent:.1f}",
                    flush=True,
                )
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
