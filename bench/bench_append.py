"""The event store's append alone: CPU per save of this process and of Postgres, and latency.

Starts an embedded PostgreSQL in a temporary directory, opens the store as every role does
(`open_event_store` with the settings' eventsourcing keys), then saves N new tasks (one Created
event each) one `store.save` at a time, from 1 thread and from 8 (no group committer, so the
appends contend for the table lock). Prints figures; asserts nothing.

    python bench/bench_append.py [--saves 3000] [--threads 1,8] [--json FILE]

Figures per thread count: saves/s, save latency p50/p99, and CPU ms per save of this process
(psutil, user + system, all its threads) and of every Postgres process (the backends and the
WAL writer). Building the task (`TaskCommands.build`) is outside the timed and counted part's
save but inside the process CPU: it is the same in either tree.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from agenttasks.application.store import EventStore, close, open_event_store
from agenttasks.application.tasks import Actor, NewTask
from agenttasks.bootstrap import task_commands
from agenttasks.servers.postgres import create_database, start_postgres
from agenttasks.settings import Settings

ACTOR = Actor("bench")


def postgres_cpu(postmaster: int) -> float:
    """CPU seconds used so far by the postmaster and its children (backends, WAL writer, ...)."""
    top = psutil.Process(postmaster)
    used = 0.0
    for process in [top, *top.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        used += times.user + times.system
    return used


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(store: EventStore, postmaster: int, saves: int, threads: int) -> dict[str, float]:
    """N saves spread over `threads` threads; CPU per save of this process and of Postgres."""
    commands = task_commands(store)
    each = saves // threads
    latencies: list[list[float]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)

    def save(mine: list[float]) -> None:
        tasks = [
            commands.build(ACTOR, NewTask(f"t{i}", "summary", {"content": "x"}))
            for i in range(each)
        ]
        start.wait()
        for task in tasks:
            began = time.perf_counter()
            store.save(task)
            mine.append(time.perf_counter() - began)

    workers = [threading.Thread(target=save, args=(latencies[i],)) for i in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()  # the tasks are built: count from here
    me = psutil.Process()
    cpu_before, pg_before, wall_before = (
        me.cpu_times(),
        postgres_cpu(postmaster),
        time.perf_counter(),
    )
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - wall_before
    cpu_after, pg_after = me.cpu_times(), postgres_cpu(postmaster)
    client = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    done = [value for mine in latencies for value in mine]
    return {
        "saves_per_s": len(done) / wall,
        "p50_ms": percentile(done, 0.5) * 1000,
        "p99_ms": percentile(done, 0.99) * 1000,
        "client_cpu_ms_per_save": client / len(done) * 1000,
        "postgres_cpu_ms_per_save": (pg_after - pg_before) / len(done) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=3000)
    parser.add_argument("--threads", default="1,8")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-append-") as home:
        server = start_postgres(Path(home) / "postgres")
        try:
            url = create_database(server.url, "bench_append")
            store = open_event_store(Settings(database_url=url).eventsourcing_env())
            try:
                run(store, server.pid, 200, 8)  # warm: connections open, statements prepared
                for threads in (int(t) for t in args.threads.split(",")):
                    result = run(store, server.pid, args.saves, threads)
                    print(
                        f"{threads} thread(s): {result['saves_per_s']:.0f} saves/s,"
                        f" p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms,"
                        f" CPU ms per save: client {result['client_cpu_ms_per_save']:.3f},"
                        f" postgres {result['postgres_cpu_ms_per_save']:.3f}"
                    )
                    figures.update({f"{k}_{threads}t": v for k, v in result.items()})
            finally:
                close(store)
        finally:
            server.stop()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
