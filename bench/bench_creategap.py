"""Why an HTTP create costs more than a lifecycle: statements, batches and CPU by phase.

Starts `agenttasks up` (its worker runs the offline engine) in a temporary data directory with
pg_stat_statements loaded, then runs two loads on the same stack and prints, for each, the CPU
per task by process, the events stored per task, the projector's batches (its tracking UPDATE
calls) and events per batch, and the Postgres statements by total time per task:

- http: wrk POSTs of bench_create's small task at --clients connections (bench_create's load);
- burst: the same task saved directly in batches of 500 (bench_workers' throughput load).

    python bench/bench_creategap.py [--clients 32] [--seconds 8] [--burst 3000] [--spy FILE]

--spy FILE records `py-spy record --gil` of the background process (relay, project, deliver,
maintain) during the http phase (raw, to FILE); its sampling inflates that phase's CPU.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_create import BODY, drained, start_up
from measure import cpu_seconds, postmaster_pid, role_of
from wrk_post import wrk_posts

from agenttasks.application.store import close, open_event_store
from agenttasks.application.tasks import Actor, NewTask
from agenttasks.bootstrap import task_commands
from agenttasks.settings import Settings

CONFIG: dict[str, Any] = {"content": "Some text."}  # bench_create's BODY's task_config
PY_SPY = "/tmp/spyenv/bin/py-spy"


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    process.wait(60)


def background_pid(root: int) -> int:
    for child in psutil.Process(root).children(recursive=True):
        if "run" in child.cmdline() and "relay" in " ".join(child.cmdline()):
            return int(child.pid)
    raise SystemExit("no background process found")


def backends(home: Path, url: str) -> dict[int, tuple[str, float]]:
    """Each Postgres backend: (its client's role and last statement, CPU seconds so far)."""
    owner: dict[str, int] = {}
    peer: dict[str, str] = {}
    for line in subprocess.run(["ss", "-xpn"], capture_output=True, text=True).stdout.splitlines():
        fields = line.split()
        if len(fields) < 9 or "pid=" not in line:
            continue
        local, remote = fields[5], fields[7]
        owner[local] = int(line.split("pid=", 1)[1].split(",", 1)[0])
        peer[local] = remote
    client_of: dict[int, int] = {}
    for inode, pid in owner.items():
        other = owner.get(peer.get(inode, ""))
        if other is not None:
            client_of.setdefault(pid, other)
    with psycopg.connect(url) as connection:
        queries: dict[int, str] = dict(
            connection.execute("SELECT pid, left(query, 40) FROM pg_stat_activity").fetchall()
        )
    found: dict[int, tuple[str, float]] = {}
    for child in psutil.Process(postmaster_pid(home)).children():
        client = client_of.get(child.pid)
        try:
            cpu = child.cpu_times()
            role = role_of(psutil.Process(client)) if client else "(no client: server process)"
        except psutil.Error:
            continue
        text = " ".join(str(queries.get(child.pid, "") or "").split())
        found[child.pid] = (f"{role} | {text}", cpu.user + cpu.system)
    return found


def by_backend(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
               tasks: int) -> list[tuple[str, float]]:  # fmt: skip
    """CPU ms per task of the Postgres backends, by client role and last statement."""
    used: dict[str, float] = {}
    for pid, (label, cpu) in after.items():
        used[label] = used.get(label, 0.0) + cpu - before.get(pid, (label, 0.0))[1]
    return sorted(((k, v * 1000 / max(1, tasks)) for k, v in used.items()), key=lambda x: -x[1])


def _events_table(connection: psycopg.Connection[Any]) -> str:
    """The event store's table (its name follows the application's)."""
    table = connection.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        " AND tablename LIKE '%%events' AND tablename NOT LIKE '%%snapshot%%'"
        " ORDER BY tablename LIMIT 1"
    ).fetchone()
    assert table is not None
    return str(table[0])


def topics(url: str, after: int) -> dict[str, int]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            f"SELECT topic, count(*) FROM {_events_table(connection)}"
            " WHERE notification_id > %s GROUP BY topic",
            (after,),
        ).fetchall()
    return {str(t).rsplit(".", 1)[-1]: int(n) for t, n in rows}


def last_id(url: str) -> int:
    with psycopg.connect(url) as connection:
        row = connection.execute(
            f"SELECT max(notification_id) FROM {_events_table(connection)}"
        ).fetchone()
    return int(row[0] or 0) if row else 0


def counts(url: str) -> tuple[int, int]:
    """(tasks in the read model, events stored)."""
    with psycopg.connect(url) as connection:
        tasks = connection.execute("SELECT count(*) FROM tasks").fetchone()
        table = connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename LIKE '%%events' AND tablename NOT LIKE '%%snapshot%%'"
            " ORDER BY tablename LIMIT 1"
        ).fetchone()
        events = (
            connection.execute(f"SELECT count(*) FROM {table[0]}").fetchone() if table else None
        )
    return int(tasks[0] if tasks else 0), int(events[0] if events else 0)


def statements(url: str) -> list[tuple[str, int, float, int]]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT query, calls, total_exec_time, rows FROM pg_stat_statements"
            " ORDER BY total_exec_time DESC"
        ).fetchall()
    return [(str(q), int(c), float(t), int(r)) for q, c, t, r in rows]


def reset(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SELECT pg_stat_statements_reset()")


def report(name: str, url: str, roots: list[int], before: dict[str, float], start: tuple[int, int],
           seconds: float, expect: int = 0, *, home: Path, pg_before: dict[int, tuple[str, float]],
           first: int) -> dict[str, Any]:  # fmt: skip
    deadline = time.monotonic() + 120
    while counts(url)[0] - start[0] < expect:  # the burst's tasks all in the read model
        if time.monotonic() > deadline:
            raise SystemExit(f"{name}: the read model did not reach {expect} tasks in 120 s")
        time.sleep(0.05)
    drained(url)
    after = cpu_seconds(roots)
    pg_after = backends(home, url)
    tasks, events = counts(url)
    tasks -= start[0]
    events -= start[1]
    by_role = {r: (after[r] - before.get(r, 0.0)) / max(1, tasks) * 1000 for r in after}
    pg = by_backend(pg_before, pg_after, tasks - start[0])
    kinds = topics(url, first)
    rows = statements(url)
    batches = sum(c for q, c, _, _ in rows if "UPDATE projection_tracking" in q)
    total_ms = sum(t for _, _, t, _ in rows)
    print(f"\n== {name}: {tasks} tasks in {seconds:.1f} s ({tasks / seconds:,.0f}/s), "
          f"{events / max(1, tasks):.2f} events a task")  # fmt: skip
    print("CPU ms per task: " + ", ".join(
        f"{r} {ms:.3f}" for r, ms in sorted(by_role.items(), key=lambda x: -x[1])
    ) + f"; all {sum(by_role.values()):.3f}")  # fmt: skip
    print(f"projector batches {batches}: {events / max(1, batches):.1f} events a batch, "
          f"{tasks / max(1, batches):.2f} tasks a batch")  # fmt: skip
    print("events a task by kind: " + ", ".join(
        f"{k} {n / max(1, tasks):.2f}" for k, n in sorted(kinds.items(), key=lambda x: -x[1])
    ))  # fmt: skip
    print("Postgres CPU ms per task by client | last statement (top 12):")
    for label, ms in pg[:12]:
        print(f"  {ms:6.3f}  {label}")
    print(f"statements' execution time {total_ms / max(1, tasks):.3f} ms per task; top 25:")
    print(f"{'ms/task':>8} {'calls/task':>10} {'us/call':>8} {'rows/call':>9}  query")
    for query, calls, total, got in rows[:25]:
        text = " ".join(query.split())[:150]
        print(f"{total / max(1, tasks):>8.3f} {calls / max(1, tasks):>10.3f}"
              f" {total * 1000 / max(1, calls):>8.1f} {got / max(1, calls):>9.1f}  {text}")  # fmt: skip
    return {"tasks": tasks, "events": events, "batches": batches, "cpu": by_role, "kinds": kinds,
            "postgres": pg,
            "statements": rows[:60]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--burst", type=int, default=3000)
    parser.add_argument("--spy", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="agenttasks-gap-"))
    process, runtime, token = start_up(home)
    url = runtime["database_url"]
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        connection.execute("ALTER SYSTEM SET pg_stat_statements.track = 'all'")
    stop(process)
    process, runtime, token = start_up(home)  # the same data directory: Postgres restarts
    url = runtime["database_url"]
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    roots = [process.pid, postmaster_pid(home)]
    figures: dict[str, Any] = {}
    spy = None
    try:
        for _ in range(3):  # warm-up: the worker's first fetch, the API's first requests
            wrk_posts(f"{runtime['api_url']}/api/v1/utils/ai-tasks/", BODY, 2, 1, token)
        drained(url)
        reset(url)
        before, start = cpu_seconds(roots), counts(url)
        pg_before, first = backends(home, url), last_id(url)
        if args.spy:
            spy = subprocess.Popen(
                [PY_SPY, "record", "--gil", "--pid", str(background_pid(process.pid)),
                 "-d", str(int(args.seconds)), "-f", "raw", "-o", str(args.spy)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        began = time.perf_counter()
        wrk_posts(
            f"{runtime['api_url']}/api/v1/utils/ai-tasks/", BODY, args.clients, args.seconds, token
        )
        figures["http"] = report(
            "http", url, roots, before, start, time.perf_counter() - began,
            home=home, pg_before=pg_before, first=first,
        )  # fmt: skip
        if spy is not None:
            spy.wait(60)
            spy = None

        store = open_event_store(Settings(database_url=url).eventsourcing_env())
        commands = task_commands(store)
        reset(url)
        before, start = cpu_seconds(roots), counts(url)
        pg_before, first = backends(home, url), last_id(url)
        began = time.perf_counter()
        made = 0
        while made < args.burst:
            batch = [
                commands.build(Actor("bench"), NewTask("burst", "summary", dict(CONFIG)))
                for _ in range(min(500, args.burst - made))
            ]
            commands.store.save(*batch)
            made += len(batch)
        figures["burst"] = report(
            "burst",
            url,
            roots,
            before,
            start,
            time.perf_counter() - began,
            expect=made,
            home=home,
            pg_before=pg_before,
            first=first,
        )
        close(store)
        if args.json:
            args.json.write_text(json.dumps(figures))
    finally:
        if spy is not None:
            spy.kill()
            spy.wait()
        stop(process)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
