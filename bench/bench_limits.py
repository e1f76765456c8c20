"""The physical limits our figures are compared with: raw INSERT commits and JetStream publishes.

Starts its own embedded Postgres and a bare nats-server with JetStream (file storage, like our
stream; no auth), measures, stops them. Prints figures; asserts nothing.

    python bench/bench_limits.py [--seconds 4] [--json FILE]

Figures:
- raw single-row INSERT commits/s (autocommit, 200-byte body) from 1 and 32 client threads.
- JetStream publishes/s of a 500-byte message (our events' typical size) to a file stream with
  a duplicate window and a Nats-Msg-Id header, as the relay publishes: one at a time (each ack
  awaited), and with 256 in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_create import raw_inserts

from agenttasks.servers.nats import nats_server_binary
from agenttasks.servers.postgres import start_postgres


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def publishes(url: str, seconds: float, in_flight: int) -> float:
    import nats
    from nats.js.api import StorageType, StreamConfig

    connection = await nats.connect(url)
    stream = f"BENCH{in_flight}"
    js = connection.jetstream()
    await js.add_stream(
        StreamConfig(
            name=stream, subjects=[f"{stream.lower()}.>"], storage=StorageType.FILE,
            duplicate_window=120,
        )
    )  # fmt: skip
    body = b"x" * 500
    sent = 0
    deadline = time.perf_counter() + seconds
    begin = time.perf_counter()
    while time.perf_counter() < deadline:
        batch = [
            js.publish(f"{stream.lower()}.e", body, headers={"Nats-Msg-Id": str(sent + i)})
            for i in range(in_flight)
        ]
        await asyncio.gather(*batch)
        sent += in_flight
    rate = sent / (time.perf_counter() - begin)
    await connection.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="agenttasks-limits-"))
    postgres = start_postgres(home / "postgres")
    port = free_port()
    nats_server = subprocess.Popen(
        [nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port),
         "-sd", str(home / "jetstream")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    figures: dict[str, float] = {}
    try:
        for clients in (1, 32):
            figures[f"raw_inserts_per_s_{clients}"] = raw_inserts(
                postgres.url, clients, args.seconds
            )
        url = f"nats://127.0.0.1:{port}"
        for _ in range(100):  # until the server accepts clients
            try:
                figures["js_publish_per_s_1"] = asyncio.run(publishes(url, args.seconds, 1))
                break
            except OSError:
                time.sleep(0.05)
        figures["js_publish_per_s_256"] = asyncio.run(publishes(url, args.seconds, 256))
    finally:
        nats_server.terminate()
        nats_server.wait(10)
        postgres.stop()
        shutil.rmtree(home, ignore_errors=True)
    print(
        f"raw INSERT commits/s: {figures['raw_inserts_per_s_1']:,.0f} (1 client),"
        f" {figures['raw_inserts_per_s_32']:,.0f} (32 clients)"
    )
    print(
        f"JetStream publishes/s (500 B, file storage): {figures['js_publish_per_s_1']:,.0f}"
        f" one at a time, {figures['js_publish_per_s_256']:,.0f} with 256 in flight"
    )
    if args.json:
        args.json.write_text(json.dumps(figures))


if __name__ == "__main__":
    main()
