"""1,000 concurrent SSE clients on one API process while tasks run: latency and memory.

Starts embedded Postgres and NATS, then the relay, the task projector and one API process
(`agenttasks api`: uvicorn, uvloop, httptools) as subprocesses. A load generator in another
process (raw asyncio sockets, so its work is not counted in the API's CPU or memory) opens the
SSE connections; this process drives the tasks with TaskCommands (the worker commands, no
worker) at a steady rate and records when each command committed. Prints figures and writes
bench/results-sse.txt; asserts nothing.

    python bench/bench_sse.py [--clients 1000] [--users 100] [--steps 30] [--rate 200] [--append]

Figures:
- commit -> client latency p50/p99/max over every live message every client received: from the
  moment the command's save returned (the commit) to the moment the generator read the message
  off its socket (both wall clock on this machine).
- API RSS with every client connected minus idle RSS, divided by the number of clients.
- Completeness: each stream received exactly the positions it should, in order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-that-is-long-enough-for-hs256"
ID = re.compile(rb"id: (\d+)\r\n")
AT_ONCE = 100


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# The load generator (a separate process) --------------------------------------------------


async def one_stream(
    port: int, path: str, token: str, record: list[tuple[int, float]], opened: asyncio.Event
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.decode(errors="replace")[:200])
    opened.set()
    buffer = b""
    try:
        while chunk := await reader.read(65536):
            now = time.time()
            buffer += chunk
            end = 0
            for match in ID.finditer(buffer):
                record.append((int(match.group(1)), now))
                end = match.end()
            buffer = buffer[end:][-256:]
            if buffer.endswith(b"0\r\n\r\n"):  # the last chunk: the server ended the stream
                break
    finally:
        writer.close()


async def generate(port: int, plan: list[list[str]]) -> list[list[tuple[int, float]]]:
    records: list[list[tuple[int, float]]] = [[] for _ in plan]
    tasks = []
    for start in range(0, len(plan), AT_ONCE):
        events = []
        for index in range(start, min(len(plan), start + AT_ONCE)):
            opened = asyncio.Event()
            events.append(opened)
            path, token = plan[index]
            tasks.append(asyncio.create_task(one_stream(port, path, token, records[index], opened)))
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 60)
    print("connected", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # "stop"
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return records


# The orchestrator ------------------------------------------------------------------------


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-c", "from agenttasks.cli import main; main()", *args]
    return subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def wait_ready(url: str, seconds: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the API at {url} did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--steps", type=int, default=30, help="progress updates per task")
    parser.add_argument("--rate", type=float, default=200.0, help="task events per second")
    parser.add_argument("--append", action="store_true", help="add to results-sse.txt")
    parser.add_argument("--generate", nargs=3, metavar=("PORT", "PLAN", "OUT"))
    args = parser.parse_args()
    if args.generate:
        port, plan, out = args.generate
        records = asyncio.run(generate(int(port), json.loads(Path(plan).read_text())))
        Path(out).write_text(json.dumps(records))
        return
    run(args)


def run(args: argparse.Namespace) -> None:
    import psutil

    from agenttasks.api.auth import mint_token
    from agenttasks.application.store import close, open_event_store
    from agenttasks.application.tasks import SYSTEM, Actor, NewTask
    from agenttasks.bootstrap import task_commands
    from agenttasks.servers.nats import start_nats
    from agenttasks.servers.postgres import create_database, start_postgres
    from agenttasks.servers.secrets import ROLES
    from agenttasks.settings import Settings

    home = Path(tempfile.mkdtemp(prefix="agenttasks-bench-sse-"))
    postgres = start_postgres(home / "postgres")
    nats = start_nats(
        home / "nats",
        port=free_port(),
        passwords={role: "p" + secrets.token_hex(24) for role in ROLES},
    )
    processes: list[subprocess.Popen[bytes]] = []
    store = None
    try:
        database_url = create_database(postgres.url, "bench_sse")
        base_env = {
            **os.environ,
            "AGENTTASKS_HOME": str(home),
            "AGENTTASKS_DATABASE_URL": database_url,
            "AGENTTASKS_JWT_SECRET": SECRET,
            "PYTHONPATH": str(ROOT / "src"),
        }

        def role_env(role: str) -> dict[str, str]:
            return {**base_env, "AGENTTASKS_NATS_URL": nats.url_for(role)}

        api_port = free_port()
        api_url = f"http://127.0.0.1:{api_port}"
        processes.append(spawn(["relay"], role_env("relay"), home / "relay.log"))
        processes.append(spawn(["project", "tasks"], role_env("projector"), home / "project.log"))
        api = spawn(
            ["api", "--host", "127.0.0.1", "--port", str(api_port)],
            role_env("api"),
            home / "api.log",
        )
        processes.append(api)
        wait_ready(api_url)

        store = open_event_store(Settings(database_url=database_url).eventsourcing_env())
        commands = task_commands(store)
        users = [f"user{i}" for i in range(args.users)]
        task_ids: list[UUID] = []
        owner: dict[UUID, str] = {}
        for user in users:
            written = commands.create(
                Actor(user), NewTask(f"{user}'s task", "summary", {"content": "x"})
            )
            task_ids.append(written.task_id)
            owner[written.task_id] = user
        # Per-task streams check that the task is visible: wait until the read model shows all.
        with psycopg.connect(database_url) as connection:
            deadline = time.monotonic() + 30
            query = "SELECT count(*) FROM tasks"
            while connection.execute(query).fetchone()[0] < len(task_ids):  # type: ignore[index]
                if time.monotonic() > deadline:
                    raise SystemExit("the projector did not show the created tasks within 30 s")
                time.sleep(0.05)

        tokens = {user: mint_token(SECRET, user, ttl=3600) for user in users}
        plan: list[tuple[str, str]] = []
        expected_kind: list[tuple[str, Any]] = []
        for index in range(args.clients):
            if index % 2:
                user = users[index // 2 % len(users)]
                plan.append(("/api/v1/utils/tasks/stream/", tokens[user]))
                expected_kind.append(("user", user))
            else:
                task_id = task_ids[index // 2 % len(task_ids)]
                plan.append((f"/api/v1/utils/tasks/{task_id}/stream/", tokens[owner[task_id]]))
                expected_kind.append(("task", task_id))
        (home / "plan.json").write_text(json.dumps(plan))

        # Warm up (imports, pools, first-request paths), then the idle baseline.
        warm = subprocess.run(
            [sys.executable, "-c", WARM_UP, str(api_port), tokens[users[0]], str(task_ids[0])],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if warm.returncode:
            raise SystemExit(warm.stderr)
        time.sleep(1.0)  # settle (freed warm-up buffers) before the idle memory baseline
        api_process = psutil.Process(api.pid)
        idle_rss = api_process.memory_info().rss

        generator = subprocess.Popen(
            [sys.executable, __file__, "--generate", str(api_port), str(home / "plan.json"),
             str(home / "records.json")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        line = generator.stdout.readline() if generator.stdout else ""
        if line.strip() != "connected":
            raise SystemExit(f"the load generator failed: {line}")
        time.sleep(2.0)  # settle after the connection burst before reading memory
        connected_rss = api_process.memory_info().rss
        cpu_before = sum(api_process.cpu_times()[:2])

        # Drive every task through start, `steps` progress updates and completion.
        committed: dict[int, float] = {}
        interval = 1.0 / args.rate
        next_at = time.perf_counter()
        peak_rss = connected_rss
        started = time.perf_counter()
        for step in range(args.steps + 2):
            for task_id in task_ids:
                time.sleep(max(0.0, next_at - time.perf_counter()))
                next_at += interval
                if step == 0:
                    written = commands.start(task_id, 1, "bench")
                elif step <= args.steps:
                    progress = step * 90 // args.steps
                    written = commands.report_progress(task_id, 1, progress, f"step {step}")
                else:
                    written = commands.complete(task_id, 1, {"summary": "done"})
                committed[written.position or 0] = time.time()
            peak_rss = max(peak_rss, api_process.memory_info().rss)
        drive_seconds = time.perf_counter() - started
        time.sleep(3.0)
        cpu_used = sum(api_process.cpu_times()[:2]) - cpu_before
        assert generator.stdin is not None
        generator.stdin.write("stop\n")
        generator.stdin.flush()
        generator.wait(60)
        records = json.loads((home / "records.json").read_text())

        history = {t: [e.position for e in commands.history(SYSTEM, t)] for t in task_ids}
        by_user: dict[str, list[int]] = {}
        for task_id, positions in history.items():
            by_user.setdefault(owner[task_id], []).extend(p for p in positions if p in committed)
        latencies: list[float] = []
        complete = 0
        for (kind, key), received in zip(expected_kind, records, strict=True):
            positions = [position for position, _ in received]
            wanted = history[key] if kind == "task" else sorted(by_user[key])
            complete += positions == wanted
            latencies += [at - committed[p] for p, at in received if p in committed]

        events = len(committed)
        report = "\n".join(
            [
                f"machine: {os.cpu_count()} cores; API: one uvicorn process (uvloop, httptools); "
                f"relay, projector, load generator and driver are other processes on the same cores",
                f"clients: {args.clients} SSE connections ({args.clients // 2} all-tasks streams of "
                f"{args.users} users, {args.clients - args.clients // 2} per-task streams)",
                f"updates: {events} task events in {drive_seconds:.1f} s ({events / drive_seconds:.0f}/s),"
                f" {len(latencies)} live messages delivered"
                f" ({len(latencies) / drive_seconds:.0f}/s)",
                f"complete streams (every expected position once, in order): {complete}/{args.clients}",
                "",
                f"commit -> client latency: p50 {percentile(latencies, 0.5) * 1000:.1f} ms,"
                f" p99 {percentile(latencies, 0.99) * 1000:.1f} ms,"
                f" max {max(latencies) * 1000:.1f} ms,"
                f" mean {statistics.fmean(latencies) * 1000:.1f} ms",
                f"API RSS: idle {idle_rss / 2**20:.1f} MiB, {args.clients} connected "
                f"{connected_rss / 2**20:.1f} MiB, peak while updating {peak_rss / 2**20:.1f} MiB",
                f"memory per connection: {(connected_rss - idle_rss) / args.clients / 1024:.1f} KiB "
                f"(connected - idle) / clients; {(peak_rss - idle_rss) / args.clients / 1024:.1f} KiB at peak",
                f"API CPU from the first update to 3 s after the last: {cpu_used:.2f} s"
                f" ({cpu_used / max(1, len(latencies)) * 1e6:.0f} us per message delivered)",
                "",
                "targets: p99 < 50 ms, < 100 KB per connection",
            ]
        )
        print(report)
        results = ROOT / "bench" / "results-sse.txt"
        if args.append:
            report = results.read_text() + "\n" + report
        results.write_text(report + "\n")
    finally:
        if store is not None:
            close(store)
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        nats.stop()
        postgres.stop()


# One SSE connection opened and dropped, so the measured idle process has every code path loaded.
WARM_UP = """
import sys, httpx
port, token, task = sys.argv[1:]
with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
    for path in ("/api/v1/utils/tasks/stream/?after=0", f"/api/v1/utils/tasks/{task}/stream/"):
        with client.stream("GET", path, headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status_code == 200, r.status_code
            next(r.iter_bytes())
"""


if __name__ == "__main__":
    main()
