"""The floor of a create in this stack: a bare Litestar app under uvicorn answering one POST.

The same server settings as the api role (uvloop, httptools, no access log), one handler that
takes a small msgspec body and answers 201 with a small JSON view: no auth, no middleware, no
store. CPU per request of that server is the least a create over HTTP can cost here. Prints
figures; asserts nothing.

    python bench/bench_floor.py [--seconds 6] [--clients 8,32] [--json FILE]

Needs wrk (apt install wrk). Prints, at each concurrency: requests/s, p50/p99 and
"CPU ms per request" of the server process (psutil, user + system).
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
from wrk_post import wrk_posts

BODY = {"title": "bench", "task_type": "summary", "task_config": {"content": "Some text."}}

SERVER = """
import msgspec, uvicorn
from litestar import Litestar, post

class TaskCreate(msgspec.Struct, forbid_unknown_fields=True):
    title: str
    task_type: str
    task_config: dict

class TaskView(msgspec.Struct):
    id: str
    title: str
    task_type: str
    status: str

@post("/api/v1/utils/ai-tasks/")
async def create(data: TaskCreate) -> TaskView:
    return TaskView(id="00000000-0000-0000-0000-000000000000", title=data.title,
                    task_type=data.task_type, status="pending")

app = Litestar([create], debug=False, logging_config=None)
uvicorn.run(app, host="127.0.0.1", port=int(__import__("sys").argv[1]), access_log=False,
            loop="uvloop", http="httptools", log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wrk(url: str, clients: int, seconds: float) -> tuple[int, float, float, float, int]:
    """(requests, seconds, p50 ms, p99 ms, errors) of one wrk run."""
    return wrk_posts(url, BODY, clients, seconds)


def steal_percent(seconds: float) -> float:
    """Share of CPU time the host took from this machine over `seconds` (vmstat's st)."""

    def counters() -> tuple[float, float]:
        fields = [float(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return sum(fields), fields[7] if len(fields) > 7 else 0.0

    total, steal = counters()
    time.sleep(seconds)
    total2, steal2 = counters()
    return 100 * (steal2 - steal) / max(1.0, total2 - total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--clients", default="8,32")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}/api/v1/utils/ai-tasks/"
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    figures: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.post(url, json=BODY, timeout=1).status_code == 201:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the bare Litestar server did not start")
            time.sleep(0.1)
        process = psutil.Process(server.pid)
        wrk(url, 8, 1)  # warm-up
        print(f"steal before: {steal_percent(1):.0f}%")
        print(f"{'clients':>7} {'requests/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}"
              f" {'CPU ms per request':>18}")  # fmt: skip
        for clients in [int(c) for c in args.clients.split(",")]:
            before = process.cpu_times()
            requests, seconds, p50, p99, errors = wrk(url, clients, args.seconds)
            after = process.cpu_times()
            spent = (after.user - before.user) + (after.system - before.system)
            cpu_ms = spent / max(1, requests) * 1000
            print(f"{clients:>7} {requests / seconds:>10,.0f} {p50:>7.2f} {p99:>7.2f} {errors:>6}"
                  f" {cpu_ms:>18.3f}")  # fmt: skip
            figures[f"requests_per_s_{clients}"] = requests / seconds
            figures[f"cpu_ms_per_request_{clients}"] = cpu_ms
        print(f"steal after: {steal_percent(1):.0f}%")
        if args.json:
            args.json.write_text(json.dumps(figures))
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
