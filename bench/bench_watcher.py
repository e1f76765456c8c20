"""The API's projection watcher: CPU of its event loop per projector NOTIFY.

Every API process holds one `ProjectionWatcher` (projections/positions.py), which reads each
projector batch's NOTIFY and wakes the requests waiting for a position (read your writes). This
starts an embedded Postgres, the watcher on a uvloop loop (as the API runs), and a sender thread
that sends --notifies announcements at --rate a second, each awaited by --waiters waiters (a
create's wait each; at 32 clients a projector batch holds ~6.7 creates); it prints the loop
thread's CPU per NOTIFY (time.thread_time, so the sender's own CPU is not counted). For a before/after, run it with PYTHONPATH pointing at the other tree's src/.

    .venv/bin/python bench/bench_watcher.py [--notifies 3000] [--rate 1000] [--rounds 3] [--waiters 1]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import uvloop

from agenttasks.projections.base import NOTIFY_CHANNEL, announcement
from agenttasks.projections.positions import ProjectionWatcher
from agenttasks.servers.postgres import start_postgres

NAMES = ("metrics", "statistics", "tasks", "template_usage", "templates")


def send(url: str, first: int, count: int, rate: float) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        next_at = time.perf_counter()
        for position in range(first, first + count):
            time.sleep(max(0.0, next_at - time.perf_counter()))
            payload = announcement(dict.fromkeys(NAMES, position))
            connection.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, payload))
            next_at += 1.0 / rate


async def one_round(watcher: ProjectionWatcher, url: str, first: int, count: int,
                    rate: float, waiters: int) -> float:  # fmt: skip
    """The loop thread's CPU microseconds per NOTIFY over one round."""
    sender = threading.Thread(target=send, args=(url, first, count, rate))
    began = time.thread_time()
    sender.start()
    waits = [asyncio.ensure_future(watcher.wait("tasks", p, timeout=60)) for p in
             range(first, first + count) for _ in range(waiters)]  # fmt: skip
    results = await asyncio.gather(*waits)
    used = time.thread_time() - began
    await asyncio.to_thread(sender.join)
    assert all(results), "a wait timed out: the watcher missed an announcement"
    return used * 1e6 / count


async def main(notifies: int, rate: float, rounds: int, waiters: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        server = start_postgres(Path(directory) / "pg")
        try:
            watcher = ProjectionWatcher(server.url)
            await watcher.start()
            figures = []
            for n in range(rounds):
                figures.append(
                    await one_round(watcher, server.url, 1 + n * notifies, notifies, rate, waiters)
                )
                print(f"round {n + 1}: {figures[-1]:.1f} us of loop CPU per NOTIFY", flush=True)
            await watcher.stop()
            print(
                f"median {statistics.median(figures):.1f} us ({notifies} a round at {rate:.0f}/s,"
                f" {waiters} waiter(s) each)"
            )
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notifies", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--waiters", type=int, default=1, help="waits for each announcement")
    args = parser.parse_args()
    uvloop.run(main(args.notifies, args.rate, args.rounds, args.waiters))
