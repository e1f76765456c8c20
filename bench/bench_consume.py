"""bus/'s per-message cost in a consumer: fetch (and ack) from a real stream, CPU per message.

Starts nats-server, publishes N task events as the relay does, then consumes them all through
`PullConsumer` (lingering, as the workers and the deliverer do; one ack each) and through
`StreamReader` (as the projector does; no acks), in batches of B. Prints, per way and batch,
this process's CPU and nats-server's CPU per message. Asserts nothing. For a before/after, run
it with PYTHONPATH pointing at the other tree's src/ (it imports agenttasks from there).

    .venv/bin/python bench/bench_consume.py [--messages 20000] [--batch 8,64] [--rounds 3]
                                            [--ways pull,reader]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

from agenttasks.bus.connection import Bus, connect
from agenttasks.bus.messages import TaskEvent
from agenttasks.servers.nats import start_nats
from agenttasks.servers.secrets import ROLES


def _event(position: int) -> TaskEvent:
    return TaskEvent(
        position=position, task_id=str(uuid4()), type="created", version=1,
        timestamp=datetime.now(UTC), user="bench", task_type="summary", priority="normal",
        update_type="status", status="pending", progress=0, message="",
        data={"title": "Summarise", "task_config": {"text": "x" * 200}},
    )  # fmt: skip


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _publish(relay: Bus, count: int, after: int) -> int:
    sequence = after
    for start in range(0, count, 500):
        events = [_event(after + start + i + 1) for i in range(min(500, count - start))]
        sequence = await relay.publish_in_order(events, sequence)
    return sequence


async def _pull(bus: Bus, name: str, count: int, batch: int, start: int) -> None:
    consumer = await bus.pull_consumer(name, lingering=True, start_sequence=start)
    taken = 0
    while taken < count:
        for delivery in await consumer.fetch(batch, wait=5.0):
            await delivery.ack()
            taken += 1
    await bus.nc.flush()
    await consumer.close()


async def _read(bus: Bus, name: str, count: int, batch: int, start: int) -> None:
    reader = await bus.open_reader(name, start)
    taken = 0
    while taken < count:
        taken += len(await reader.fetch(batch, wait=5.0))
    await reader.close()


async def main(messages: int, batches: list[int], rounds: int, ways: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-consume-") as directory:
        passwords = dict.fromkeys(ROLES, "bench")
        server = start_nats(Path(directory), port=14222 + os.getpid() % 1000, passwords=passwords)
        try:
            relay = await connect(server.url_for("relay"), "bench-relay")
            worker = await connect(server.url_for("worker"), "bench-worker")
            projector = await connect(server.url_for("projector"), "bench-projector")
            await relay.ensure_stream()
            last = 0
            figures: dict[str, list[tuple[float, float]]] = {}
            for round_ in range(rounds):
                for batch in batches:
                    for way, bus, run in (
                        ("pull+ack", worker, _pull),
                        ("reader", projector, _read),
                    ):
                        if way.split("+")[0] not in ways:
                            continue
                        first = last + 1
                        last = await _publish(relay, messages, last)
                        cpu, nats_cpu = time.process_time(), _cpu_of(server.pid)
                        await run(bus, f"bench-{way[:4]}-{round_}-{batch}", messages, batch, first)
                        cpu, nats_cpu = time.process_time() - cpu, _cpu_of(server.pid) - nats_cpu
                        figures.setdefault(f"{way} B={batch}", []).append(
                            (cpu / messages * 1e6, nats_cpu / messages * 1e6)
                        )
            for key, values in figures.items():
                ours = ", ".join(f"{v[0]:.1f}" for v in values)
                server_us = ", ".join(f"{v[1]:.1f}" for v in values)
                print(
                    f"{key:16} client us/msg median {statistics.median(v[0] for v in values):6.1f}"
                    f" ({ours}); nats-server {statistics.median(v[1] for v in values):5.1f}"
                    f" ({server_us})"
                )
            for bus in (relay, worker, projector):
                await bus.close()
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--batch", default="8,64")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ways", default="pull,reader", help="pull (and ack), reader")
    options = parser.parse_args()
    batches = [int(b) for b in options.batch.split(",")]
    asyncio.run(main(options.messages, batches, options.rounds, options.ways.split(",")))
