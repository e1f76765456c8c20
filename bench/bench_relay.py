"""The relay's CPU per event: catch-up (batches of 1,000) and live (a writer at a steady rate).

Starts an embedded Postgres and NATS in a temporary directory, stores `--tasks` tasks (created,
started, completed: 3 events each, the lifecycle of bench_workers), then runs the relay in this
process (on uvloop, as the roles run) and measures the CPU of the event loop's thread (time.thread_time: the relay, its
Postgres session and the NATS client all run there; the writer thread is not counted):

- catch-up: on a new NATS server (empty stream), a fresh relay publishes the whole log;
- live: the relay caught up, a writer thread stores `--live-tasks` more at `--rate` tasks/s,
  so the relay publishes from the appends' NOTIFY payloads in small batches.
- bursts (RELAYMAP): the writer stores `--bursts` commits of `--burst` new tasks each (Created
  only, one commit at a time, each waited for on the stream), as the API's batched creates do:
  the relay's CPU per event, and Postgres's (every server process, psutil), whether the rows
  come in the NOTIFYs or are read back.

With --check each round reads the stream back: every stored event once, in order. Run the code under
test with PYTHONPATH=<tree>/src (this file puts the tree it sits in last on sys.path).
Prints figures; asserts nothing else.

    python bench/bench_relay.py [--tasks 2000] [--rounds 3] [--live-tasks 600] [--rate 300]
                                [--bursts 100 --burst 30]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgspec
import psutil
import uvloop

sys.path.append(str(Path(__file__).resolve().parents[1] / "src"))

import agenttasks
from agenttasks.application.store import EventStore, close, open_event_store, read_log
from agenttasks.application.tasks import Actor, NewTask, TaskCommands
from agenttasks.bootstrap import relay as relay_for
from agenttasks.bootstrap import task_commands
from agenttasks.bus.connection import connect
from agenttasks.bus.messages import STREAM
from agenttasks.servers.nats import start_nats
from agenttasks.servers.postgres import create_database, start_postgres
from agenttasks.servers.secrets import ROLES
from agenttasks.settings import Settings

ALICE = Actor("alice")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def lifecycle(commands: TaskCommands, count: int, prefix: str, rate: float = 0.0) -> None:
    started = time.monotonic()
    for i in range(count):
        if rate:
            time.sleep(max(0.0, started + i / rate - time.monotonic()))
        task_id = commands.create(
            ALICE, NewTask(f"{prefix}{i}", "summary", {"content": "text"}, priority="high")
        ).task_id
        commands.start(task_id, 1, "w1")
        commands.complete(task_id, 1, {"summary": "done"}, "finished")


def burst(commands: TaskCommands, size: int, prefix: str) -> None:
    tasks = [
        commands.build(ALICE, NewTask(f"{prefix}{i}", "summary", {"content": "text"}))
        for i in range(size)
    ]
    commands.store.save(*tasks)


def postgres_cpu(pid: int) -> float:
    """CPU seconds of the postmaster and its live children (the sessions, the writers)."""
    total = 0.0
    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def last_position(store: EventStore) -> int:
    return int(store.recorder.max_notification_id() or 0)


async def published_positions(bus_url: str) -> list[int]:
    bus = await connect(bus_url, "bench-relay-reader")
    try:
        info = await bus.js.stream_info(STREAM)
        positions = []
        for sequence in range(1, info.state.last_seq + 1):
            message = await bus.js.get_msg(STREAM, seq=sequence)
            positions.append(msgspec.json.decode(message.data or b"{}")["position"])
        return positions
    finally:
        await bus.close()


async def one_round(
    store: EventStore,
    commands: TaskCommands,
    database_url: str,
    bus_url: str,
    args: argparse.Namespace,
    n: int,
) -> tuple[float, float, int, tuple[float, float, int]]:
    bus = await connect(bus_url, "bench-relay")
    relay = relay_for(store, database_url, bus)
    stop = asyncio.Event()
    target = last_position(store)
    cpu = time.thread_time()
    task = asyncio.create_task(relay.run(stop))
    while relay.published_position < target:  # noqa: ASYNC110 (a bench: polling is fine)
        await asyncio.sleep(0.005)
    catch_up = (time.thread_time() - cpu) * 1000 / target
    before = relay.published_position
    cpu = time.thread_time()
    writer = threading.Thread(
        target=lifecycle, args=(commands, args.live_tasks, f"live{n}-", args.rate)
    )
    writer.start()
    await asyncio.to_thread(writer.join)  # off the measured loop thread
    target = last_position(store)
    while relay.published_position < target:  # noqa: ASYNC110 (a bench: polling is fine)
        await asyncio.sleep(0.005)
    live = (time.thread_time() - cpu) * 1000 / (target - before)
    bursts = (float("nan"), float("nan"), 0)
    if args.bursts:
        before, carried_before = relay.published_position, relay.carried
        cpu, pg = time.thread_time(), postgres_cpu(args.postgres_pid)
        for b in range(args.bursts):
            await asyncio.to_thread(burst, commands, args.burst, f"burst{n}-{b}-")
            target = last_position(store)
            while relay.published_position < target:  # noqa: ASYNC110 (a bench: polling is fine)
                await asyncio.sleep(0.005)
        events = target - before
        bursts = (
            (time.thread_time() - cpu) * 1000 / events,
            (postgres_cpu(args.postgres_pid) - pg) * 1000 / events,
            relay.carried - carried_before,
        )
    carried = relay.carried
    stop.set()
    await task
    await bus.close()
    if args.check:
        positions = await published_positions(bus_url)
        stored = [item.position for item in read_log(store)]
        assert positions == stored, "the stream does not hold every stored event once, in order"
    return catch_up, live, carried, bursts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--live-tasks", type=int, default=600)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--bursts", type=int, default=0, help="commits of --burst tasks")
    parser.add_argument("--burst", type=int, default=30)
    parser.add_argument("--check", action="store_true", help="read the stream back each round")
    args = parser.parse_args()
    print(f"code under test: {Path(agenttasks.__file__).parent}")
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as home:
        postgres = start_postgres(Path(home) / "pg")
        passwords = {role: secrets.token_hex(8) for role in ROLES}
        nats = start_nats(Path(home) / "nats", port=free_port(), passwords=passwords)
        try:
            database_url = create_database(postgres.url, "bench_relay")
            store = open_event_store(Settings(database_url=database_url).eventsourcing_env())
            commands = task_commands(store)
            lifecycle(commands, args.tasks, "t")
            for n in range(args.rounds):
                nats.stop()
                nats = start_nats(Path(home) / f"nats{n}", port=free_port(), passwords=passwords)
                args.postgres_pid = postgres.pid
                catch_up, live, carried, bursts = uvloop.run(
                    one_round(store, commands, database_url, nats.url_for("relay"), args, n)
                )
                print(
                    f"round {n + 1}: catch-up {catch_up * 1000:.1f} us/event, "
                    f"live {live * 1000:.1f} us/event ({carried} carried)"
                    + (
                        f", bursts of {args.burst}: relay {bursts[0] * 1000:.1f} us/event, "
                        f"postgres {bursts[1] * 1000:.1f} us/event ({bursts[2]} carried)"
                        if args.bursts
                        else ""
                    ),
                    flush=True,
                )
            close(store)
        finally:
            nats.stop()
            postgres.stop()


if __name__ == "__main__":
    main()
