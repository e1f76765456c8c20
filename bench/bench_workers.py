"""Workers: created -> started latency with idle workers, and whole-lifecycle throughput.

Starts `agenttasks up --no-worker` in a temporary data directory, then worker processes running
the instant test engine (agents that do no work), so what is measured is the lifecycle itself:
every event stored, relayed to JetStream, consumed by a worker, and projected. Prints figures;
asserts nothing.

    python bench/bench_workers.py [--workers 1] [--concurrency 64] [--tasks 5000]
                                  [--load 0.2] [--json FILE]

Figures:
- created -> started, p50/p99: from the Created event's commit timestamp to the Started event's,
  both written by Postgres-side clocks of the same machine, for tasks created one at a time
  (20 ms apart) while the workers are idle.
- lifecycle throughput: N tasks created in batches as fast as the store takes them; tasks/s from
  the first create to the moment the tasks read model shows every one of them completed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from uuid import UUID

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_create import percentile, start_up
from load import cpu_load
from measure import cpu_seconds, postmaster_pid

from agenttasks.application.store import close, open_event_store
from agenttasks.application.tasks import SYSTEM, Actor, NewTask, TaskCommands
from agenttasks.bootstrap import task_commands
from agenttasks.domain.task import Task
from agenttasks.settings import Settings

CONFIG = {"content": "Nothing to see."}


def start_workers(
    home: Path, runtime: dict, count: int, concurrency: int
) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "AGENTTASKS_HOME": str(home),
        "AGENTTASKS_DATABASE_URL": runtime["database_url"],
        "AGENTTASKS_NATS_URL": runtime["nats_role_urls"]["worker"],
    }
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agenttasks.cli",
                "--log-level",
                "WARNING",
                "worker",
                "--engine",
                "instant",
                "--concurrency",
                str(concurrency),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(home / f"worker-{i}.log").open("w"),
        )
        for i in range(count)
    ]


class BusClock:
    """When each task's `created` and `started` events reached a NATS subscriber (wall clock).

    The Started event's own timestamp is when the worker began the attempt, before its append
    committed (PERF15); Started seen on NATS is after it was stored and relayed: the agent
    began between the two.
    """

    def __init__(self, reader_url: str) -> None:
        self.seen: dict[str, float] = {}
        self.seen_started: dict[str, float] = {}
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._listen(reader_url),))
        self._thread.daemon = True
        self._thread.start()
        self._ready.wait(10)

    async def _listen(self, url: str) -> None:
        import nats

        connection = await nats.connect(url)
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()

        async def seen(message: nats.aio.msg.Msg) -> None:
            self.seen[json.loads(message.data)["task_id"]] = time.time()

        async def seen_started(message: nats.aio.msg.Msg) -> None:
            self.seen_started.setdefault(json.loads(message.data)["task_id"], time.time())

        await connection.subscribe("agenttasks.events.task.*.*.*.created", cb=seen)
        await connection.subscribe("agenttasks.events.task.*.*.*.started", cb=seen_started)
        await connection.flush()
        self._ready.set()
        await self._stop.wait()
        await connection.close()

    def close(self) -> None:
        """Closes the connection before the stack stops (else nats-py reconnects and logs)."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)


def stop_stack(up: subprocess.Popen[bytes], workers: list[subprocess.Popen[bytes]]) -> None:
    """Stops the workers (SIGTERM: they finish what they hold), then `up` (SIGINT, as Ctrl-C)."""
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        worker.wait(30)
    up.send_signal(signal.SIGINT)
    up.wait(60)


def ready(commands: TaskCommands, count: int = 3) -> None:
    """Returns once the workers start tasks: a task created before a worker's first fetch
    waits for its start-up, which a loaded machine stretched past a fixed 2 s sleep (PERF17
    saw a tenth of the latency samples at 0.1-1 s for that reason alone)."""
    new = NewTask("warm-up", "summary", CONFIG)
    ids = [commands.create(Actor("bench"), new).task_id for _ in range(count)]
    deadline = time.monotonic() + 120
    for task_id in ids:
        while not any(isinstance(e.event, Task.Started) for e in commands.history(SYSTEM, task_id)):
            if time.monotonic() > deadline:
                raise SystemExit("the workers started nothing within 120 s")
            time.sleep(0.05)


def latency(
    commands: TaskCommands, count: int, clock: BusClock
) -> tuple[list[float], list[float], list[float], list[float]]:
    ids = []
    for _ in range(count):
        ids.append(commands.create(Actor("bench"), NewTask("latency", "summary", CONFIG)).task_id)
        time.sleep(0.02)
    deadline = time.monotonic() + 60
    latencies, to_bus, from_bus, stored = [], [], [], []
    for task_id in ids:
        while True:
            history = [e.event for e in commands.history(SYSTEM, task_id)]
            started = [e for e in history if isinstance(e, Task.Started)]
            if started:
                created_at: datetime = history[0].timestamp
                started_at: datetime = started[0].timestamp
                latencies.append((started_at - created_at).total_seconds())
                on_bus = clock.seen.get(str(task_id))
                if on_bus is not None:
                    to_bus.append(on_bus - created_at.timestamp())
                    from_bus.append(started_at.timestamp() - on_bus)
                relayed = clock.seen_started.get(str(task_id))
                if relayed is not None:
                    stored.append(relayed - created_at.timestamp())
                break
            if time.monotonic() > deadline:
                raise SystemExit("tasks did not start within 60 s: are the workers running?")
            time.sleep(0.05)
    return latencies, to_bus, from_bus, stored


def throughput(
    commands: TaskCommands, database_url: str, count: int, batch: int = 500
) -> tuple[float, float]:
    created: list[UUID] = []
    begin = time.perf_counter()
    while len(created) < count:
        tasks = [
            commands.build(Actor("bench"), NewTask("throughput", "summary", CONFIG))
            for _ in range(min(batch, count - len(created)))
        ]
        commands.store.save(*tasks)
        created.extend(t.id for t in tasks)
    stored = time.perf_counter() - begin
    with psycopg.connect(database_url) as connection:
        while True:
            done = connection.execute(
                "SELECT count(*) FROM tasks WHERE title = 'throughput' AND status = 'completed'"
            ).fetchone()[0]
            if done >= count:
                break
            if time.perf_counter() - begin > 600:
                raise SystemExit(f"only {done} of {count} completed within 600 s")
            time.sleep(0.02)
    return count / (time.perf_counter() - begin), count / stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--latency-samples", type=int, default=300)
    parser.add_argument(
        "--load", type=float, default=0.0, help="CPU fraction a load generator takes"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="agenttasks-bench-"))
    up, runtime, _ = start_up(home, "--no-worker")
    workers = start_workers(home, runtime, args.workers, args.concurrency)
    store = open_event_store(Settings(database_url=runtime["database_url"]).eventsourcing_env())
    clock: BusClock | None = None
    try:
        commands = task_commands(store)
        ready(commands)
        print(
            f"machine: {os.cpu_count()} cores; {args.workers} worker process(es), concurrency {args.concurrency}, instant engine; load generator {args.load:.0%}"
        )
        clock = BusClock(runtime["nats_role_urls"]["reader"])
        with cpu_load(args.load):  # both phases run under the same load
            samples, to_bus, from_bus, stored = latency(commands, args.latency_samples, clock)
            roots = [up.pid, postmaster_pid(home), *(w.pid for w in workers), os.getpid()]
            before, wall = cpu_seconds(roots), time.perf_counter()
            rate, store_rate = throughput(commands, runtime["database_url"], args.tasks)
            after, wall = cpu_seconds(roots), time.perf_counter() - wall
        print(
            f"created -> started, idle workers ({len(samples)} tasks): p50 {percentile(samples, 0.5) * 1000:.2f} ms,"
            f" p99 {percentile(samples, 0.99) * 1000:.2f} ms, max {max(samples) * 1000:.2f} ms"
        )
        # Split at the moment a subscriber saw the created event on NATS (same machine clock).
        for label, part in (
            ("created -> seen on NATS", to_bus),
            ("seen on NATS -> started", from_bus),
            ("created -> Started stored and seen on NATS", stored),
        ):
            if part:
                print(
                    f"  {label}: p50 {percentile(part, 0.5) * 1000:.2f} ms,"
                    f" p99 {percentile(part, 0.99) * 1000:.2f} ms"
                )
        print(
            f"lifecycle throughput ({args.tasks} tasks: created, started, completed; stored, relayed,"
            f" projected): {rate:,.0f} tasks/s (creating alone ran at {store_rate:,.0f} tasks/s)"
        )
        # Where the CPU went: on 2 cores the lifecycle is bound by the sum of these.
        spent = {role: after[role] - before.get(role, 0.0) for role in after}
        total = sum(spent.values())
        print(f"CPU during that phase: {total:.1f} s in {wall:.1f} s of wall time; per task:")
        for role, seconds in sorted(spent.items(), key=lambda item: -item[1]):
            print(f"  {role:16} {seconds / args.tasks * 1000:6.3f} ms  ({seconds:.1f} s)")
        if args.json:
            figures = {
                "stack": "agenttasks",
                "load": args.load,
                "latency_p50_ms": percentile(samples, 0.5) * 1000,
                "latency_p99_ms": percentile(samples, 0.99) * 1000,
                "latency_max_ms": max(samples) * 1000,
                "started_stored_p50_ms": percentile(stored, 0.5) * 1000 if stored else None,
                "started_stored_p99_ms": percentile(stored, 0.99) * 1000 if stored else None,
                "lifecycle_tasks_per_s": rate,
                # The load generator's burners are not counted (measure.py), as in the peer.
                "cpu_ms_per_task": {r: s / args.tasks * 1000 for r, s in spent.items()},
            }
            args.json.write_text(json.dumps(figures))
    finally:
        if clock is not None:
            clock.close()
        close(store)
        stop_stack(up, workers)
        shutil.rmtree(home, ignore_errors=True)  # the data directory this run made


if __name__ == "__main__":
    main()
