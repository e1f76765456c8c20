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
import logging
import os
import statistics
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


def run(url: str, tasks: int, batch: int) -> tuple[float, float, float, float, float]:
    """(client ms, backend ms, wall ms) per create, statements and median client us per batch."""
    with psycopg.connect(url) as connection:
        runners = [ProjectionRunner(p, url) for p in bootstrap.projections().values()]
        for runner in runners:
            runner.prepare(connection)
        # Warm: a few hundred tasks so the tables, caches and prepared statements are there.
        warm = stream(200, 1)
        for start in range(0, len(warm), batch):
            apply_together(runners, connection, warm[start : start + batch])  # type: ignore[arg-type]
        messages = stream(tasks, len(warm) + 1)  # positions and stream sequences coincide
        # (No query here: it would leave a transaction open, and the batches would then go
        # the guarded way instead of the live projector's one pipeline.)
        backend = connection.info.backend_pid
        statements = _statements(connection)
        cpu0, backend0, wall0 = time.process_time(), _backend_cpu(backend), time.perf_counter()
        batches = 0
        each = []  # the client's CPU per batch: its median shrugs off the neighbours' bursts
        for start in range(0, len(messages), batch):
            began = time.process_time()
            apply_together(runners, connection, messages[start : start + batch])  # type: ignore[arg-type]
            each.append(time.process_time() - began)
            batches += 1
        cpu, back, wall = (
            time.process_time() - cpu0,
            _backend_cpu(backend) - backend0,
            time.perf_counter() - wall0,
        )
        sent = _statements(connection) - statements
    median = statistics.median(each) * 1e6
    return cpu * 1000 / tasks, back * 1000 / tasks, wall * 1000 / tasks, sent / batches, median


def serve(url: str, tasks: int, batch: int) -> None:
    """Applies one batch per line read from stdin; writes its client CPU (ns) per batch.

    The `--pair` driver runs two of these (two code trees) and makes them take turns, batch
    by batch, so both meet the same neighbours' load: drift between runs cancels out.
    """
    import sys

    with psycopg.connect(url) as connection:
        runners = [ProjectionRunner(p, url) for p in bootstrap.projections().values()]
        for runner in runners:
            runner.prepare(connection)
        warm = stream(200, 1)
        for start in range(0, len(warm), batch):
            apply_together(runners, connection, warm[start : start + batch])  # type: ignore[arg-type]
        messages = stream(tasks, len(warm) + 1)
        backend = connection.info.backend_pid
        backend0 = _backend_cpu(backend)
        print("ready", flush=True)
        for start in range(0, len(messages), batch):
            sys.stdin.readline()
            began = time.process_time_ns()
            apply_together(runners, connection, messages[start : start + batch])  # type: ignore[arg-type]
            print(time.process_time_ns() - began, flush=True)
        sys.stdin.readline()
        print(f"backend {_backend_cpu(backend) - backend0}", flush=True)


def pair(url: str, trees: list[str], tasks: int, batch: int) -> None:
    """Runs `serve` for each code tree (its src/ on PYTHONPATH), taking turns batch by batch."""
    import subprocess
    import sys

    workers = []
    for n, tree in enumerate(trees):
        database = create_database(url, f"bench_pair_{os.getpid()}_{batch}_{n}")
        env = {**os.environ, "PYTHONPATH": tree}
        command = [sys.executable, __file__, "--serve", database, "--tasks", str(tasks)]
        workers.append(
            subprocess.Popen(
                [*command, "--batch", str(batch)],
                env=env,
                text=True,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        )
    for worker in workers:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
    times: list[list[int]] = [[] for _ in workers]
    batches = -(-tasks * len(KINDS) // batch)
    for turn in range(batches):
        order = range(len(workers)) if turn % 2 == 0 else reversed(range(len(workers)))
        for n in order:
            worker = workers[n]
            assert worker.stdin is not None
            assert worker.stdout is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
            times[n].append(int(worker.stdout.readline()))
    for n, (tree, worker) in enumerate(zip(trees, workers, strict=True)):
        assert worker.stdin is not None
        assert worker.stdout is not None
        worker.stdin.write("end\n")
        worker.stdin.flush()
        backend = float(worker.stdout.readline().split()[1])
        worker.wait()
        print(
            f"B={batch:<3} {tree}: client {sum(times[n]) / 1e6 / tasks:.3f} ms/create"
            f" (median batch {statistics.median(times[n]) / 1e3:.0f} us),"
            f" backend {backend * 1000 / tasks:.3f} ms/create",
            flush=True,
        )


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
    parser.add_argument(
        "--pair", help="two src/ directories, comma-separated: run both, taking turns per batch"
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # a --pair worker's database
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.tasks, int(args.batch))
        return
    logging.basicConfig(level=logging.WARNING)  # a batch falling back to the guarded way says so
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
                if args.pair:
                    pair(url, args.pair.split(","), args.tasks, size)
                    continue
                database = create_database(url, f"bench_project_{os.getpid()}_{n}")
                client, backend, wall, sent, median = run(database, args.tasks, size)
                print(
                    f"B={size:<3} client {client:.3f} ms/create (median batch {median:.0f} us),"
                    f" backend {backend:.3f} ms/create, wall {wall:.3f} ms/create"
                    + (f", statements/batch {sent:.1f}" if args.count_statements else ""),
                    flush=True,
                )
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
