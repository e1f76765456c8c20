"""Postgres per lifecycle: each statement's calls, time, rows, buffers and WAL per task.

Starts `agenttasks up --no-worker` in a temporary data directory with pg_stat_statements
loaded, one worker process on the instant engine (bench_workers' setup), then saves --tasks
tasks in batches of 500 (bench_workers' throughput load) and prints, once every task is
completed in the read model: CPU per task by process, the Postgres backends' CPU per task by
client, commits and WAL bytes per task, and pg_stat_statements per task (top-level statements;
with --nested also the statements run inside the append functions).

    python bench/bench_pglife.py [--tasks 2000] [--top 30] [--nested] [--json FILE]

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_create import start_up
from bench_creategap import backends, by_backend, stop
from bench_workers import ready, start_workers, stop_stack, throughput
from measure import cpu_seconds, postmaster_pid

from agenttasks.application.store import close, open_event_store
from agenttasks.bootstrap import task_commands
from agenttasks.settings import Settings

STATEMENTS = """
SELECT query, toplevel, calls, total_exec_time, rows, shared_blks_hit, shared_blks_read,
    shared_blks_dirtied, wal_bytes
FROM pg_stat_statements ORDER BY total_exec_time DESC
"""


def database_counters(url: str) -> tuple[int, int]:
    """(commits of this database so far, the WAL's insert position in bytes)."""
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SELECT pg_stat_clear_snapshot()")
        commits = connection.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        wal = connection.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn").fetchone()
    assert commits is not None
    assert wal is not None
    return int(commits[0]), int(wal[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--nested", action="store_true", help="list nested statements too")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="agenttasks-pglife-"))
    up, runtime, _ = start_up(home, "--no-worker")
    url = runtime["database_url"]
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        connection.execute("ALTER SYSTEM SET pg_stat_statements.track = 'all'")
    stop(up)
    up, runtime, _ = start_up(home, "--no-worker")  # the same data directory: Postgres restarts
    url = runtime["database_url"]
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    workers = start_workers(home, runtime, 1, 64)
    store = open_event_store(Settings(database_url=url).eventsourcing_env())
    try:
        commands = task_commands(store)
        ready(commands)
        roots = [up.pid, postmaster_pid(home), *(w.pid for w in workers), os.getpid()]
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("SELECT pg_stat_statements_reset()")
        pg_before, cpu_before = backends(home, url), cpu_seconds(roots)
        commits_before, wal_before = database_counters(url)
        began = time.perf_counter()
        rate, _ = throughput(commands, url, args.tasks)
        wall = time.perf_counter() - began
        cpu_after, pg_after = cpu_seconds(roots), backends(home, url)
        commits_after, wal_after = database_counters(url)
        with psycopg.connect(url) as connection:
            rows = connection.execute(STATEMENTS).fetchall()
    finally:
        close(store)
        stop_stack(up, workers)
        shutil.rmtree(home, ignore_errors=True)

    n = args.tasks
    spent = {r: (cpu_after[r] - cpu_before.get(r, 0.0)) * 1000 / n for r in cpu_after}
    print(f"{n} tasks in {wall:.1f} s ({rate:,.0f} tasks/s); CPU ms per task: " + ", ".join(
        f"{r} {ms:.3f}" for r, ms in sorted(spent.items(), key=lambda x: -x[1])
    ) + f"; all {sum(spent.values()):.3f}")  # fmt: skip
    print("Postgres backends' CPU ms per task by client | last statement:")
    for label, ms in by_backend(pg_before, pg_after, n)[:10]:
        print(f"  {ms:6.3f}  {label[:110]}")
    commits = (commits_after - commits_before) / n
    wal = (wal_after - wal_before) / n
    top = [r for r in rows if r[1]]
    total = sum(r[3] for r in top)
    print(f"commits {commits:.2f} a task, WAL {wal:,.0f} bytes a task, top-level statements'"
          f" execution {total / n:.3f} ms a task")  # fmt: skip
    # bench_workers' own completion poll: a scan of the whole tasks table every 20 ms.
    poll = sum(r[3] for r in top if "FROM tasks WHERE title" in r[0])
    print(f"  of which the bench's completion poll {poll / n:.3f} ms a task")
    print(f"{'ms/task':>8} {'calls/t':>7} {'us/call':>8} {'rows/c':>6} {'hit/c':>6}"
          f" {'dirt/t':>6} {'WAL B/t':>7}  query")  # fmt: skip
    listed = rows if args.nested else top
    table: list[dict[str, Any]] = []
    for query, toplevel, calls, time_ms, got, hit, read, dirtied, wal_bytes in listed[: args.top]:
        text = ("" if toplevel else "  (nested) ") + " ".join(query.split())
        print(f"{time_ms / n:>8.4f} {calls / n:>7.3f} {time_ms * 1000 / max(1, calls):>8.1f}"
              f" {got / max(1, calls):>6.1f} {(hit + read) / max(1, calls):>6.1f}"
              f" {dirtied / n:>6.2f} {float(wal_bytes) / n:>7.0f}  {text[:120]}")  # fmt: skip
        table.append({"query": text, "calls": calls, "ms": time_ms, "rows": got,
                      "blocks": hit + read, "dirtied": dirtied, "wal": float(wal_bytes)})  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({
            "tasks": n, "rate": rate, "cpu_ms_per_task": spent, "commits_per_task": commits,
            "wal_bytes_per_task": wal, "statements": table,
        }))  # fmt: skip


if __name__ == "__main__":
    main()
