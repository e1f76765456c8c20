"""Create-task throughput and latency, beside raw INSERT commits, and read-model freshness.

Runs against a real embedded stack started by `agenttasks up` in a temporary data directory
(or against one already running, with --home). Prints figures; asserts nothing.

    python bench/bench_create.py [--seconds 8] [--clients 1,8,32] [--home DIR] [--json FILE]

Figures:
- POST /ai-tasks/ throughput and latency p50/p99 at each concurrency. A POST returns only once
  the task is visible in the read model (read your writes), so its latency includes the relay
  and the projector.
- CPU per create across every process of the stack (API, relay, projector, worker, deliverer,
  Postgres, NATS; not the load generator), counted from the first POST until the pipeline has
  caught up: every task created in that run completed in the read model.
- Raw single-row INSERT commits/s on the same Postgres at the same concurrency, and the ratio.
- created -> visible in the read model at a steady 100 creates/s: from the moment `save()`
  returns (the commit) to the projector's NOTIFY for that position.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import cpu_seconds, postmaster_pid
from wrk_post import wrk_posts

from agenttasks.application.group_commit import GroupCommitter
from agenttasks.application.store import close, open_event_store
from agenttasks.application.tasks import Actor, NewTask, TaskCommands
from agenttasks.bootstrap import task_commands
from agenttasks.projections.base import read_announcement
from agenttasks.settings import Settings

BODY = {"title": "bench", "task_type": "summary", "task_config": {"content": "Some text."}}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def start_up(home: Path, *extra: str) -> tuple[subprocess.Popen[bytes], dict[str, str], str]:
    import socket

    def free() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    port = free()
    log = (home / "up.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "agenttasks.cli", "--data-dir", str(home), "--log-level", "WARNING",
         "up", "--port", str(port), "--nats-port", str(free()), *extra],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while "Press Ctrl-C" not in (home / "up.log").read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit((home / "up.log").read_text())
        time.sleep(0.2)
    runtime = json.loads((home / "runtime.json").read_text())
    token = next(
        line.split()[1]
        for line in (home / "up.log").read_text().splitlines()
        if line.strip().startswith("Token:")
    )
    return process, runtime, token


async def http_creates(
    api: str, token: str, clients: int, seconds: float
) -> tuple[int, list[float], int]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=api, headers=headers, limits=limits, timeout=30
    ) as client:

        async def one_client() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    response = await client.post("/api/v1/utils/ai-tasks/", json=BODY)
                except httpx.TransportError:
                    errors += 1
                    continue
                if response.status_code != 201:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(one_client() for _ in range(clients)))
    return len(latencies), latencies, errors


def wrk_creates(
    api: str, token: str, clients: int, seconds: float
) -> tuple[float, float, float, int]:
    """The same load from wrk (C, HTTP/1.1 keep-alive): (creates/s, p50 ms, p99 ms, errors)."""
    url = f"{api}/api/v1/utils/ai-tasks/"
    requests, elapsed, p50, p99, errors = wrk_posts(url, BODY, clients, seconds, token)
    return requests / elapsed, p50, p99, errors


def ab_creates(
    api: str, token: str, clients: int, seconds: float
) -> tuple[float, float, float, int]:
    """The same load from ApacheBench (a C client): (creates/s, p50 ms, p99 ms, errors)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as body:
        json.dump(BODY, body)
    output = subprocess.run(
        ["ab", "-q", "-k", "-c", str(clients), "-t", str(int(seconds)), "-n", "10000000",
         "-p", body.name, "-T", "application/json", "-H", f"Authorization: Bearer {token}",
         f"{api}/api/v1/utils/ai-tasks/"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    os.unlink(body.name)

    def field(prefix: str) -> float:
        line = next(line for line in output.splitlines() if line.strip().startswith(prefix))
        return float(line.split(":")[-1].split()[0] if ":" in line else line.split()[1])

    errors = int(field("Failed requests")) + int(
        next((line.split(":")[1] for line in output.splitlines() if "Non-2xx" in line), "0")
    )
    return field("Requests per second"), field("50%"), field("99%"), errors


def drained(database_url: str, timeout: float = 300) -> float:
    """Waits until every task (the HTTP ones and the direct ones) has ended; seconds it took."""
    begin = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as connection:
        while True:
            left = connection.execute(
                "SELECT count(*) FROM tasks WHERE status IN ('pending', 'running')"
            ).fetchone()[0]
            if left == 0:
                return time.perf_counter() - begin
            if time.perf_counter() - begin > timeout:
                raise SystemExit(f"{left} tasks still not completed after {timeout} s")
            time.sleep(0.05)


def bench_tasks(database_url: str) -> int:
    with psycopg.connect(database_url) as connection:
        return connection.execute("SELECT count(*) FROM tasks WHERE title = 'bench'").fetchone()[0]


def raw_inserts(database_url: str, clients: int, seconds: float) -> float:
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS bench_raw (id bigserial PRIMARY KEY, body text)"
        )
    deadline = time.perf_counter() + seconds

    def one_client() -> int:
        count = 0
        with psycopg.connect(database_url, autocommit=True) as connection:
            while time.perf_counter() < deadline:
                connection.execute("INSERT INTO bench_raw (body) VALUES (%s)", ("x" * 200,))
                count += 1
        return count

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        total = sum(pool.map(lambda _: one_client(), range(clients)))
    return total / (time.perf_counter() - started)


def direct_creates(database_url: str, clients: int, seconds: float) -> tuple[float, int]:
    """TaskCommands.create from `clients` threads, no HTTP: (creates/s, transactions used)."""
    store = open_event_store(Settings(database_url=database_url).eventsourcing_env())
    committer = GroupCommitter(store)
    commands = TaskCommands(store, committer)
    deadline = time.perf_counter() + seconds

    def one_client() -> int:
        count = 0
        while time.perf_counter() < deadline:
            commands.create(Actor("bench"), NewTask("direct", "summary", {"content": "x"}))
            count += 1
        return count

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        total = sum(pool.map(lambda _: one_client(), range(clients)))
    elapsed = time.perf_counter() - started
    close(store)
    return total / elapsed, committer.transactions


def freshness(database_url: str, rate: float, seconds: float) -> list[float]:
    """Commit -> projected latency for creates issued at a steady rate."""
    store = open_event_store(Settings(database_url=database_url).eventsourcing_env())
    commands = task_commands(store)
    committed: dict[int, float] = {}
    seen: dict[int, float] = {}
    listening = threading.Event()
    done = threading.Event()

    def listen() -> None:
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute("LISTEN agenttasks_projected")
            listening.set()
            while not done.is_set():
                for notify in connection.notifies(timeout=0.5):
                    # One NOTIFY per projector batch, naming every read model that moved.
                    for name, position in read_announcement(notify.payload):
                        if name == "tasks":
                            seen[position] = time.perf_counter()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    listening.wait(10)
    interval = 1.0 / rate
    next_at = time.perf_counter()
    end = next_at + seconds
    while next_at < end:
        time.sleep(max(0.0, next_at - time.perf_counter()))
        written = commands.create(Actor("bench"), NewTask("fresh", "summary", {"content": "x"}))
        committed[written.position or 0] = time.perf_counter()
        next_at += interval
    time.sleep(2)
    done.set()
    listener.join(5)
    close(store)
    # A notification carries the batch's last position: it makes every position up to it visible.
    announced = sorted(seen.items())
    latencies = []
    for position, at in committed.items():
        visible = next((t for p, t in announced if p >= position), None)
        if visible is not None:
            latencies.append(max(0.0, visible - at))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--home", type=Path, help="a data directory with `agenttasks up` running")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--client",
        choices=["wrk", "ab", "httpx"],
        default="wrk" if shutil.which("wrk") else "ab" if shutil.which("ab") else "httpx",
        # ab's -k is HTTP/1.0 keep-alive, which uvicorn does not keep: a new connection per POST.
        help="HTTP load generator: wrk (C, HTTP/1.1 keep-alive, apt install wrk), ApacheBench"
        " (C, a connection per request here, apt install apache2-utils) or httpx (Python)",
    )
    args = parser.parse_args()

    process = None
    if args.home:
        runtime = json.loads((args.home / "runtime.json").read_text())
        token = subprocess.run(
            [sys.executable, "-m", "agenttasks.cli", "--data-dir", str(args.home), "token", "bench"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    else:
        home = Path(tempfile.mkdtemp(prefix="agenttasks-bench-"))
        process, runtime, token = start_up(home)
    # CPU is counted only for a stack this run started (its process tree is known).
    roots = [process.pid, postmaster_pid(home)] if process is not None else []
    figures: dict[str, object] = {"clients": {}}
    try:
        database_url, api = runtime["database_url"], runtime["api_url"]
        print(
            f"machine: {os.cpu_count()} cores; HTTP load from {args.client} on the same machine"
            f"{' (a Python client competes with the stack for CPU)' if args.client == 'httpx' else ''}\n"
        )
        print(
            f"{'clients':>7} {'HTTP creates/s':>14} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}"
            f" {'CPU ms':>6} {'INSERT/s':>9} {'ratio':>6} {'commands/s':>10} {'ratio':>6}"
            f" {'per txn':>7}"
        )
        breakdown: list[str] = []
        for clients in [int(c) for c in args.clients.split(",")]:
            drained(database_url)  # the previous step's direct creates are not this step's
            before, created = (cpu_seconds(roots) if roots else {}), bench_tasks(database_url)
            if args.client == "wrk":
                rate, p50, p99, errors = wrk_creates(api, token, clients, args.seconds)
            elif args.client == "ab":
                rate, p50, p99, errors = ab_creates(api, token, clients, args.seconds)
            else:
                count, latencies, errors = asyncio.run(
                    http_creates(api, token, clients, args.seconds)
                )
                rate = count / args.seconds
                p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
            drained(database_url)
            created = bench_tasks(database_url) - created
            cpu_ms = float("nan")
            by_role: dict[str, float] = {}
            if roots:
                after = cpu_seconds(roots)
                by_role = {
                    role: (after[role] - before.get(role, 0.0)) / max(1, created) * 1000
                    for role in after
                }
                cpu_ms = sum(by_role.values())
            inserts = raw_inserts(database_url, clients, args.seconds / 2)
            direct, transactions = direct_creates(database_url, clients, args.seconds / 2)
            per_transaction = direct * args.seconds / 2 / max(1, transactions)
            print(
                f"{clients:>7} {rate:>14,.0f} {p50:>7.1f} {p99:>7.1f} {errors:>6}"
                f" {cpu_ms:>6.2f} {inserts:>9,.0f} {rate / inserts:>6.2f} {direct:>10,.0f}"
                f" {direct / inserts:>6.2f} {per_transaction:>7.1f}"
            )
            figures["clients"][str(clients)] = {  # type: ignore[index]
                "creates_per_s": rate, "p50_ms": p50, "p99_ms": p99, "errors": errors,
                "cpu_ms_per_create": cpu_ms, "raw_inserts_per_s": inserts,
                "commands_per_s": direct, "cpu_ms_per_create_by_role": by_role,
            }  # fmt: skip
            breakdown.append(
                f"{clients} clients, CPU ms per create: "
                + ", ".join(
                    f"{r} {ms:.2f}" for r, ms in sorted(by_role.items(), key=lambda x: -x[1])
                )
            )
        print("\n" + "\n".join(breakdown) if breakdown and roots else "", end="")
        drained(database_url)  # the last step's direct creates: a backlog is not freshness
        fresh = freshness(database_url, rate=100, seconds=args.seconds)
        print(
            f"\ncreated -> visible in read model at 100 creates/s ({len(fresh)} tasks):"
            f" p50 {percentile(fresh, 0.5) * 1000:.1f} ms, p99 {percentile(fresh, 0.99) * 1000:.1f} ms,"
            f" max {max(fresh) * 1000:.1f} ms, mean {statistics.fmean(fresh) * 1000:.1f} ms"
        )
        figures["fresh_p50_ms"] = percentile(fresh, 0.5) * 1000
        figures["fresh_p99_ms"] = percentile(fresh, 0.99) * 1000
        if args.json:
            args.json.write_text(json.dumps(figures))
    finally:
        if process is not None:
            process.send_signal(signal.SIGINT)
            process.wait(30)
            shutil.rmtree(home, ignore_errors=True)  # the data directory this run made


if __name__ == "__main__":
    main()
