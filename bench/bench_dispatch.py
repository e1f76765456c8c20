"""Dispatch hop by hop: where the time from a task's Created event to NATS goes.

Starts `agenttasks up --no-worker` in a temporary data directory and creates tasks one at a time
(20 ms apart, the way bench_workers' latency phase does) through the same TaskCommands (group
committer) path. For each create it takes wall-clock stamps on this machine:

- created:   the Created event's own timestamp (taken when the aggregate is built, in Python);
- committed: the create call returned (the append committed: its fsync included);
- notified:  a LISTEN session of this script received the append's NOTIFY (as the relay's does);
- on NATS:   a core NATS subscriber of this script received the relayed `created` message.

It also measures the floors on the same machine at the same time: a one-row INSERT commit on
its own session (the fsync), a NOTIFY from one session to another, and a JetStream API request's
round trip. And the CPU each process spent per create during the phase (`up --separate-roles`:
the relay's own CPU shows). Prints figures; asserts nothing.

    python bench/bench_dispatch.py [--samples 300]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, cast

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_create import percentile, start_up
from measure import cpu_seconds, postmaster_pid

from agenttasks.application.store import close, open_event_store
from agenttasks.application.tasks import Actor, NewTask
from agenttasks.bootstrap import task_commands
from agenttasks.settings import Settings

CONFIG = {"content": "Nothing to see."}


class Stamps:
    """NOTIFY arrivals on the events channel and `created` messages on NATS, with wall times."""

    def __init__(self, database_url: str, channel: str, nats_url: str) -> None:
        self.notified: list[float] = []
        self.on_nats: dict[str, float] = {}
        self._ready = threading.Event()
        args = (self._listen(database_url, channel, nats_url),)
        self._thread = threading.Thread(target=asyncio.run, args=args, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise SystemExit("the listeners did not start")

    def wait_for(self, task_ids: list[Any], within: float = 30.0) -> None:
        """Returns once every task's `created` message was seen on NATS (a deadline, not a guess)."""
        deadline = time.monotonic() + within
        while any(str(task_id) not in self.on_nats for task_id in task_ids):
            if time.monotonic() > deadline:
                raise SystemExit(f"not every created message reached NATS within {within:.0f} s")
            time.sleep(0.01)

    async def _listen(self, database_url: str, channel: str, nats_url: str) -> None:
        with contextlib.suppress(Exception):  # the servers stop under it at the end
            await self._stamp(database_url, channel, nats_url)

    async def _stamp(self, database_url: str, channel: str, nats_url: str) -> None:
        import nats

        async def quiet(_: Exception) -> None:
            pass

        connection = await nats.connect(nats_url, error_cb=quiet, allow_reconnect=False)

        async def seen(message: Any) -> None:
            self.on_nats[json.loads(message.data)["task_id"]] = time.time()

        await connection.subscribe("agenttasks.events.task.*.*.*.created", cb=seen)
        await connection.flush()
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as pg:
            await pg.execute(f'LISTEN "{channel}"')
            self._ready.set()
            async for _ in pg.notifies():
                self.notified.append(time.time())


def floors(database_url: str, nats_url: str, count: int) -> dict[str, list[float]]:
    """The same machine's floors: a commit's fsync, NOTIFY between sessions, a NATS round trip."""

    async def measure() -> dict[str, list[float]]:
        import nats

        commit, notify, publish = [], [], []
        async with (
            await psycopg.AsyncConnection.connect(database_url, autocommit=True) as writer,
            await psycopg.AsyncConnection.connect(database_url, autocommit=True) as listener,
        ):
            await writer.execute("CREATE TABLE IF NOT EXISTS bench_dispatch_probe (n int)")
            await listener.execute("LISTEN bench_dispatch_probe")
            for n in range(count):
                begin = time.perf_counter()
                await writer.execute("INSERT INTO bench_dispatch_probe VALUES (%s)", (n,))
                commit.append(time.perf_counter() - begin)
                begin = time.perf_counter()
                await writer.execute("NOTIFY bench_dispatch_probe")
                async for _ in listener.notifies(stop_after=1):
                    break
                notify.append(time.perf_counter() - begin)
                await asyncio.sleep(0.005)
        connection = await nats.connect(nats_url)
        for _ in range(count):  # a JetStream API request and its answer (the publish ack's trip)
            begin = time.perf_counter()
            await connection.request("$JS.API.INFO", b"", timeout=5)
            publish.append(time.perf_counter() - begin)
            await asyncio.sleep(0.005)
        await connection.close()
        return {
            "commit of a one-row INSERT (fsync)": commit,
            "NOTIFY -> another session": notify,
            "NATS request -> JetStream answer ($JS.API.INFO)": publish,
        }

    return asyncio.run(measure())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="agenttasks-dispatch-"))
    up, runtime, _ = start_up(home, "--no-worker", "--separate-roles")
    nats_urls = cast(dict[str, str], runtime["nats_role_urls"])
    store = open_event_store(Settings(database_url=runtime["database_url"]).eventsourcing_env())
    try:
        commands = task_commands(store)
        channel = store.recorder.channel_name  # type: ignore[attr-defined]
        stamps = Stamps(runtime["database_url"], channel, nats_urls["reader"])
        warm_up = []
        for _ in range(20):  # warm-up: prepared statements, the relay's first reads
            warm_up.append(commands.create(Actor("bench"), NewTask("warm-up", "summary", CONFIG)))
            time.sleep(0.02)  # pacing: one create at a time to an idle relay
        stamps.wait_for([w.task_id for w in warm_up])
        roots = [up.pid, postmaster_pid(home)]
        before, wall = cpu_seconds(roots), time.perf_counter()
        rows = []
        for _ in range(args.samples):
            called = time.time()
            written = commands.create(Actor("bench"), NewTask("dispatch", "summary", CONFIG))
            rows.append((written.task_id, called, time.time()))
            time.sleep(0.02)  # pacing: one create at a time to an idle relay
        stamps.wait_for([task_id for task_id, _, _ in rows])
        after, wall = cpu_seconds(roots), time.perf_counter() - wall
        hops: dict[str, list[float]] = {
            k: []
            for k in (
                "created -> committed (create call returned)",
                "created -> NOTIFY at a listener",
                "NOTIFY at a listener -> seen on NATS",
                "created -> seen on NATS",
            )
        }
        names = list(hops)
        for task_id, called, returned in rows:
            history = commands.history(Actor("bench"), task_id)
            created = history[0].timestamp.timestamp()
            notified = next((t for t in stamps.notified if t >= called), None)
            on_nats = stamps.on_nats.get(str(task_id))
            if notified is None or on_nats is None:
                continue
            hops[names[0]].append(returned - created)
            hops[names[1]].append(notified - created)
            hops[names[2]].append(on_nats - notified)
            hops[names[3]].append(on_nats - created)
        print(f"machine: {os.cpu_count()} cores; {len(hops[names[3]])} of {len(rows)} creates seen")
        for label, part in hops.items():
            print(
                f"  {label}: p50 {percentile(part, 0.5) * 1000:.3f} ms,"
                f" p99 {percentile(part, 0.99) * 1000:.3f} ms"
            )
        spent = {role: after[role] - before.get(role, 0.0) for role in after}
        print(f"CPU per create during the phase ({wall:.1f} s), by process:")
        for role, seconds in sorted(spent.items(), key=lambda item: -item[1]):
            print(f"  {role:32} {seconds / len(rows) * 1000:6.3f} ms")
        print("floors, same machine, now:")
        for label, part in floors(runtime["database_url"], nats_urls["relay"], 100).items():
            print(
                f"  {label}: p50 {percentile(part, 0.5) * 1000:.3f} ms,"
                f" p99 {percentile(part, 0.99) * 1000:.3f} ms"
            )
        vmstat = subprocess.run(["vmstat", "1", "2"], capture_output=True, text=True).stdout
        print("vmstat:", vmstat.strip().splitlines()[-1])
    finally:
        close(store)
        up.send_signal(2)
        up.wait(60)
        shutil.rmtree(home, ignore_errors=True)  # the data directory this run made


if __name__ == "__main__":
    main()
