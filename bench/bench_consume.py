"""bus/'s per-message cost in a consumer: fetch (and ack) from a real stream, CPU per message.

Starts nats-server, publishes N task events as the relay does, then consumes them all through
`PullConsumer` (lingering, as the workers and the deliverer do; one ack each) and through
`StreamReader` (as the projector does; no acks), in batches of B. Prints, per way and batch,
this process's CPU and nats-server's CPU per message. `headers`: the CPU of parsing one
message's header block (the relay's two or three headers), nats-py's own parse beside the one
of the client our `connect` builds (bus/headers.py), in-process. Asserts nothing. For a
before/after, run it with PYTHONPATH pointing at the other tree's src/ (it imports agenttasks
from there).

    .venv/bin/python bench/bench_consume.py [--messages 20000] [--batch 8,64] [--rounds 3]
                                            [--ways pull,reader,headers] [--parse both]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import tempfile
import time
import timeit
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

from nats.aio.client import Client

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


# What a consumer of the relay's messages gets: Nats-Msg-Id and the expectation, and traceparent
# when tracing is on.
HEADER_BLOCKS = {
    "2 headers": b"Nats-Msg-Id: tasks:123456\r\nNats-Expected-Last-Msg-Id: tasks:123455\r\n\r\n",
    "3 headers": b"Nats-Msg-Id: tasks:123456\r\nNats-Expected-Last-Msg-Id: tasks:123455\r\n"
    b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n",
}


def _headers(client: type[Client], rounds: int) -> None:
    for name, block in HEADER_BLOCKS.items():
        for label, parse in (
            ("nats-py", Client._parse_header_lines),
            ("ours", client._parse_header_lines),
        ):
            runs = timeit.repeat(
                functools.partial(parse, block), number=100_000, repeat=max(3, rounds)
            )
            per = sorted(r / 100_000 * 1e6 for r in runs)
            print(f"headers {name} {label:8} us/parse median {statistics.median(per):5.2f}"
                  f" (min {per[0]:.2f}, max {per[-1]:.2f})")  # fmt: skip


def _parsers(client: type[Client], both: bool) -> list[tuple[str, object]]:
    # --parse both: each run once with nats-py's header parse put back on our client class and
    # once with ours, in one process (what the noise of a shared machine hurts least).
    ours = client.__dict__.get("_parse_header_lines")
    if not both or ours is None:
        return [("", None)]
    return [(" ours", ours), (" nats-py", Client.__dict__["_parse_header_lines"])]


async def main(
    messages: int, batches: list[int], rounds: int, ways: list[str], both: bool = False
) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-consume-") as directory:
        passwords = dict.fromkeys(ROLES, "bench")
        server = start_nats(Path(directory), port=14222 + os.getpid() % 1000, passwords=passwords)
        try:
            relay = await connect(server.url_for("relay"), "bench-relay")
            worker = await connect(server.url_for("worker"), "bench-worker")
            projector = await connect(server.url_for("projector"), "bench-projector")
            await relay.ensure_stream()
            if "headers" in ways:
                _headers(type(worker.nc), rounds)
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
                        client = type(bus.nc)
                        parsers = _parsers(client, both)
                        for label, parse in parsers[:: -1 if round_ % 2 else 1]:
                            if parse is not None:
                                client._parse_header_lines = parse
                            first = last + 1
                            last = await _publish(relay, messages, last)
                            cpu, nats_cpu = time.process_time(), _cpu_of(server.pid)
                            name = f"bench-{way[:4]}-{round_}-{batch}{label.replace(' ', '-')}"
                            await run(bus, name, messages, batch, first)
                            cpu = time.process_time() - cpu
                            nats_cpu = _cpu_of(server.pid) - nats_cpu
                            figures.setdefault(f"{way} B={batch}{label}", []).append(
                                (cpu / messages * 1e6, nats_cpu / messages * 1e6)
                            )
                        if parsers[0][1] is not None:
                            client._parse_header_lines = parsers[0][1]
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
    parser.add_argument(
        "--ways", default="pull,reader,headers", help="pull (and ack), reader, headers"
    )
    parser.add_argument(
        "--parse", choices=["client", "both"], default="client",
        help="both: every run with our header parse and with nats-py's, alternated",
    )  # fmt: skip
    options = parser.parse_args()
    batches = [int(b) for b in options.batch.split(",")]
    both = options.parse == "both"
    asyncio.run(main(options.messages, batches, options.rounds, options.ways.split(","), both))
