"""The Celery + Redis peer of bench_workers.py: the same two figures, measured the same way.

A no-op task that records when it started and sends one progress update (`update_state`), run
by a Celery worker with prefetch 1 and acks_late on a Redis broker and result backend, the stack
the seed guide describes. Started and stopped here: redis-server (Debian's `redis-server`
package) on a free port with persistence off, and the worker as a child process.

    python bench/peer_celery.py [--pool prefork --concurrency 2 | --pool threads --concurrency 8]
                                [--tasks 2000] [--latency-samples 300] [--load 0.2] [--json FILE]

Figures:
- created -> started, p50/p99: from just before `apply_async` to the first line of the task
  body, wall clock of the same machine, tasks sent one at a time 20 ms apart to idle workers.
- lifecycle throughput: N tasks sent as fast as the client sends them; tasks/s from the first
  send until the last task's result is stored.
- CPU per task during the lifecycle phase, by process (redis, worker, the sending client).

Needs the `bench` extra (`pip install -e '.[bench]'`: celery, redis) and redis-server; without
them it says what is missing and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    import celery
    import redis
except ImportError:  # the worker child imports this module too; main() reports it
    celery = None  # type: ignore[assignment]
    redis = None  # type: ignore[assignment]

BROKER = os.environ.get("PEER_CELERY_REDIS", "redis://127.0.0.1:6379/0")

if celery is not None:
    app = celery.Celery("peer_celery", broker=BROKER, backend=BROKER)
    app.conf.update(
        worker_prefetch_multiplier=1,
        task_acks_late=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    _counter: redis.Redis | None = None

    @app.task(bind=True, name="peer.noop")
    def noop(self: celery.Task, sent: float) -> dict[str, float]:
        """Starts, reports one progress update, completes: what our instant engine does."""
        started = time.time()
        self.update_state(state="PROGRESS", meta={"progress": 50})
        global _counter
        if _counter is None:
            _counter = redis.Redis.from_url(BROKER)
        _counter.incr("peer:done")
        return {"sent": sent, "started": started}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def missing() -> str | None:
    if celery is None or redis is None:
        return "celery and redis-py are not installed: pip install -e '.[bench]'"
    if shutil.which("redis-server") is None:
        return "redis-server is not installed: apt-get install redis-server (Debian)"
    return None


def start_redis(port: int, home: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(home)],
        stdout=(home / "redis.log").open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return process
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"redis-server did not start: see {home / 'redis.log'}") from None
            time.sleep(0.02)


def start_worker(pool: str, concurrency: int, broker: str, home: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PEER_CELERY_REDIS": broker, "PYTHONPATH": str(Path(__file__).parent)}
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "peer_celery", "worker", "--pool", pool,
         "--concurrency", str(concurrency), "--loglevel", "WARNING", "--without-gossip",
         "--without-mingle", "--prefetch-multiplier", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=(home / "worker.log").open("w"),
    )  # fmt: skip


def wait_done(client: redis.Redis, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while int(client.get("peer:done") or 0) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {client.get('peer:done')} of {count} tasks done in {timeout} s")
        time.sleep(0.005)


def measure(pool: str, concurrency: int, tasks: int, samples: int) -> dict[str, object]:
    import psutil

    home = Path(tempfile.mkdtemp(prefix="peer-celery-"))
    port = free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    app.conf.update(broker_url=broker, result_backend=broker)
    server = start_redis(port, home)
    worker = start_worker(pool, concurrency, broker, home)
    client = redis.Redis(port=port)
    try:
        # Warm up: the worker is ready when a task comes back.
        client.set("peer:done", 0)
        noop.apply_async(args=[time.time()]).get(timeout=60)
        latencies = []
        for _ in range(samples):
            result = noop.apply_async(args=[time.time()])
            times = result.get(timeout=30)
            latencies.append(times["started"] - times["sent"])
            time.sleep(0.02)
        processes = [psutil.Process(server.pid), psutil.Process(worker.pid)]
        processes += processes[1].children(recursive=True)
        processes.append(psutil.Process(os.getpid()))

        def cpu() -> dict[str, float]:
            used: dict[str, float] = {}
            for process in processes:
                role = "redis" if process.pid == server.pid else (
                    "bench (sends)" if process.pid == os.getpid() else "celery worker")  # fmt: skip
                times = process.cpu_times()
                used[role] = used.get(role, 0.0) + times.user + times.system
            return used

        client.set("peer:done", 0)
        before, begin = cpu(), time.perf_counter()
        for _ in range(tasks):
            noop.apply_async(args=[time.time()])
        wait_done(client, tasks, timeout=600)
        wall = time.perf_counter() - begin
        after = cpu()
        return {
            "stack": f"celery {pool} x{concurrency}",
            "latency_p50_ms": percentile(latencies, 0.5) * 1000,
            "latency_p99_ms": percentile(latencies, 0.99) * 1000,
            "latency_max_ms": max(latencies) * 1000,
            "lifecycle_tasks_per_s": tasks / wall,
            "cpu_ms_per_task": {
                role: (after[role] - before.get(role, 0.0)) / tasks * 1000 for role in after
            },
        }
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", choices=["prefork", "threads"], default="prefork")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--latency-samples", type=int, default=300)
    parser.add_argument(
        "--load", type=float, default=0.0, help="CPU fraction a load generator takes"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if reason := missing():
        print(f"peer_celery: skipped: {reason}", file=sys.stderr)
        raise SystemExit(2)
    sys.path.insert(0, str(Path(__file__).parent))
    from load import cpu_load

    with cpu_load(args.load):
        figures = measure(args.pool, args.concurrency, args.tasks, args.latency_samples)
    figures["load"] = args.load
    print(
        f"machine: {os.cpu_count()} cores; {figures['stack']}, redis broker and backend,"
        f" prefetch 1, acks_late; load generator {args.load:.0%}"
    )
    print(
        f"created -> started, idle workers ({args.latency_samples} tasks):"
        f" p50 {figures['latency_p50_ms']:.2f} ms, p99 {figures['latency_p99_ms']:.2f} ms,"
        f" max {figures['latency_max_ms']:.2f} ms"
    )
    print(
        f"lifecycle throughput ({args.tasks} tasks): {figures['lifecycle_tasks_per_s']:,.0f} tasks/s"
    )
    print("CPU per task:")
    for role, ms in sorted(figures["cpu_ms_per_task"].items(), key=lambda item: -item[1]):  # type: ignore[union-attr]
        print(f"  {role:16} {ms:6.3f} ms")
    if args.json:
        args.json.write_text(json.dumps(figures))


if __name__ == "__main__":
    main()
