"""Every benchmark, ours and the Celery peer's, alternated in one sitting: one table, bench/results.md.

Each round runs, one after the other so the machine's noise hits all of them: bench_workers
(agenttasks) and peer_celery (prefork x2, threads x8) on a quiet machine and again under the
load generator (bench/load.py), bench_create (HTTP creates at 8 and 32 clients with the worker
running, CPU per create), bench_limits (raw INSERT, JetStream publish), bench_floor (a bare
Litestar POST: CPU per request) and bench_startup when it
is there. The table gives the median of the rounds and their range (min-max), the ratios to the
peer and to the physical limits, the machine and the CPU time stolen by the host meanwhile.

    python bench/run.py [--rounds 3] [--tasks 2000] [--load 0.2] [--out bench/results.md]

The Celery peer needs the `bench` extra and redis-server; without them its rows say why.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = (("prefork", 2), ("threads", 8))


def cpu_counters() -> tuple[float, float]:
    """(total, steal) jiffies of all CPUs since boot, from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return sum(fields), fields[7] if len(fields) > 7 else 0.0


def machine() -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor() or "unknown CPU",
    )  # fmt: skip
    memory = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    return f"{os.cpu_count()} x {model}, {memory} GB RAM, Linux {platform.release()}, Python {platform.python_version()}"


def run(script: str, *args: str, timeout: float = 900) -> dict | str:
    """Runs one benchmark; its JSON figures, or the reason it gave none."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        path = Path(out.name)
    command = [sys.executable, str(HERE / script), *args, "--json", str(path)]
    print("$", " ".join(command[1:]), flush=True)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:.0f} s"
    print(done.stdout, end="", flush=True)
    if done.returncode != 0 or path.stat().st_size == 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"exit {done.returncode}: {last}"
    figures = json.loads(path.read_text())
    path.unlink()
    return figures


def spread(values: list[float], digits: int = 0, unit: str = "") -> str:
    if not values:
        return "n/a"
    fmt = f"{{:,.{digits}f}}"
    middle = fmt.format(statistics.median(values))
    if len(values) == 1:
        return middle + unit
    return f"{middle}{unit} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def values(results: list[dict | str], *keys: str) -> list[float]:
    found = []
    for result in results:
        if isinstance(result, str):
            continue
        value: object = result
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None  # type: ignore[assignment]
        if isinstance(value, int | float):
            found.append(float(value))
    return found


def reasons(results: list[dict | str]) -> str:
    return "; ".join(sorted({r for r in results if isinstance(r, str)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--latency-samples", type=int, default=300)
    parser.add_argument("--load", type=float, default=0.2)
    parser.add_argument("--create-seconds", type=float, default=8.0)
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    args = parser.parse_args()
    lifecycle = ["--tasks", str(args.tasks), "--latency-samples", str(args.latency_samples)]
    results: dict[str, list[dict | str]] = {}
    total0, steal0 = cpu_counters()
    began = datetime.now(UTC)
    for round_ in range(args.rounds):
        print(f"--- round {round_ + 1} of {args.rounds}", flush=True)
        for load in (0.0, args.load):
            results.setdefault(f"ours@{load}", []).append(
                run("bench_workers.py", *lifecycle, "--load", str(load))
            )
            for pool, concurrency in PEERS:
                results.setdefault(f"{pool}@{load}", []).append(
                    run("peer_celery.py", "--pool", pool, "--concurrency", str(concurrency),
                        *lifecycle, "--load", str(load))
                )  # fmt: skip
        results.setdefault("create", []).append(
            run("bench_create.py", "--clients", "8,32", "--seconds", str(args.create_seconds))
        )
        results.setdefault("limits", []).append(run("bench_limits.py"))
        results.setdefault("floor", []).append(run("bench_floor.py"))
        if (HERE / "bench_startup.py").exists():
            results.setdefault("startup", []).append(run("bench_startup.py"))
    total1, steal1 = cpu_counters()
    stolen = (steal1 - steal0) / max(1.0, total1 - total0)
    write_table(args, results, began, stolen)
    print(f"\nwrote {args.out}")


def write_table(
    args: argparse.Namespace, results: dict[str, list[dict | str]], began: datetime, stolen: float
) -> None:
    lines = [
        "# Benchmarks: agenttasks beside Celery + Redis",
        "",
        f"Written by `python bench/run.py --rounds {args.rounds} --tasks {args.tasks}"
        f" --load {args.load}` on {began:%Y-%m-%d %H:%M} UTC.",
        f"Machine: {machine()}. CPU stolen by the host during the run: {stolen:.1%}.",
        "Each figure: the median of the rounds, and (min-max). Every benchmark ran in every round,",
        "alternated, so the machine's noise hit all of them. Latency: created -> started, tasks",
        "sent one at a time 20 ms apart to idle workers. Lifecycle: tasks/s until the last one is",
        f"done. 'Loaded': the load generator takes {args.load:.0%} of every core meanwhile.",
        "Our 'started' is the Started event's timestamp: when the worker begins the attempt,",
        "before that event's append commits (since PERF15); Celery's is the task body's first line.",
        "Our task (instant engine) is 3 events: created, started, completed; the Celery task",
        "records its start and sends one progress update (`update_state`) and its result.",
        "",
        "## Dispatch and lifecycle",
        "",
        "| | agenttasks | Celery prefork x2 | Celery threads x8 |",
        "|---|---|---|---|",
    ]
    for load, label in ((0.0, "quiet"), (args.load, "loaded")):
        stacks = [f"ours@{load}", *(f"{pool}@{load}" for pool, _ in PEERS)]
        for key, name, digits, unit in (
            ("latency_p50_ms", "created -> started p50", 1, " ms"),
            ("latency_p99_ms", "created -> started p99", 1, " ms"),
            ("latency_max_ms", "created -> started max", 1, " ms"),
            ("lifecycle_tasks_per_s", "lifecycle tasks/s", 0, ""),
        ):
            cells = []
            for stack in stacks:
                found = values(results.get(stack, []), key)
                cells.append(
                    spread(found, digits, unit) if found else reasons(results.get(stack, []))
                )
            lines.append(f"| {label}: {name} | " + " | ".join(cells) + " |")
        cpu = []
        for stack in stacks:
            per_round = [
                sum(r["cpu_ms_per_task"].values())
                for r in results.get(stack, [])
                if isinstance(r, dict)
            ]
            cpu.append(spread(per_round, 2, " ms") if per_round else "n/a")
        lines.append(f"| {label}: CPU per task, all processes | " + " | ".join(cpu) + " |")
    lines += ["", "Ratios (medians; above 1 means agenttasks is better):", ""]
    for load, label in ((0.0, "quiet"), (args.load, "loaded")):
        ours_rate = values(results.get(f"ours@{load}", []), "lifecycle_tasks_per_s")
        ours_p50 = values(results.get(f"ours@{load}", []), "latency_p50_ms")
        for pool, _ in PEERS:
            rate = values(results.get(f"{pool}@{load}", []), "lifecycle_tasks_per_s")
            p50 = values(results.get(f"{pool}@{load}", []), "latency_p50_ms")
            if ours_rate and rate and ours_p50 and p50:
                lines.append(
                    f"- {label}, vs Celery {pool}: lifecycle throughput"
                    f" {statistics.median(ours_rate) / statistics.median(rate):.2f}x,"
                    f" dispatch p50 {statistics.median(p50) / statistics.median(ours_p50):.2f}x"
                )
    create = results.get("create", [])
    limits = results.get("limits", [])
    floor = results.get("floor", [])
    lines += [
        "",
        "## Creates over HTTP (wrk, HTTP/1.1 keep-alive; worker running, pipeline drained)",
        "",
        "| clients | creates/s | p50 | p99 | CPU per create, all processes | raw INSERT/s (same clients) | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for clients in ("8", "32"):
        rate = values(create, "clients", clients, "creates_per_s")
        inserts = values(create, "clients", clients, "raw_inserts_per_s")
        ratio = (
            f"{statistics.median(rate) / statistics.median(inserts):.3f}"
            if rate and inserts
            else "n/a"
        )
        lines.append(
            f"| {clients} | {spread(rate)} | {spread(values(create, 'clients', clients, 'p50_ms'), 1, ' ms')}"
            f" | {spread(values(create, 'clients', clients, 'p99_ms'), 1, ' ms')}"
            f" | {spread(values(create, 'clients', clients, 'cpu_ms_per_create'), 2, ' ms')}"
            f" | {spread(inserts)} | {ratio} |"
        )
    if reasons(create):
        lines.append(f"\nNot measured in some rounds: {reasons(create)}")
    lines += [
        "",
        "## Physical limits on this machine",
        "",
        f"- raw INSERT commits/s: {spread(values(limits, 'raw_inserts_per_s_1'))} (1 client),"
        f" {spread(values(limits, 'raw_inserts_per_s_32'))} (32 clients)",
        f"- JetStream publishes/s, 500 B, file storage: {spread(values(limits, 'js_publish_per_s_1'))}"
        f" one at a time, {spread(values(limits, 'js_publish_per_s_256'))} with 256 in flight",
        # bench_floor.py: a bare Litestar app under uvicorn, one POST; the least a create costs.
        f"- HTTP floor (bare Litestar + uvicorn, one small JSON POST), CPU ms per request:"
        f" {spread(values(floor, 'cpu_ms_per_request_8'), 3)} (8 clients),"
        f" {spread(values(floor, 'cpu_ms_per_request_32'), 3)} (32 clients);"
        f" requests/s {spread(values(floor, 'requests_per_s_32'))} (32 clients)",
    ]
    ours_rate = values(results.get("ours@0.0", []), "lifecycle_tasks_per_s")
    publish = values(limits, "js_publish_per_s_256")
    if ours_rate and publish:
        # bench_workers' instant engine: three events a lifecycle (created, started, completed).
        lines.append(
            f"- our quiet lifecycle stores and publishes about {statistics.median(ours_rate) * 3:,.0f}"
            f" events/s (3 a task), {statistics.median(ours_rate) * 3 / statistics.median(publish):.0%}"
            " of that publish limit"
        )
    startup = results.get("startup", [])
    if startup:
        lines += ["", "## Start-up and footprint (bench_startup.py)", ""]
        keys = sorted({k for r in startup if isinstance(r, dict) for k in r})
        for key in keys:
            found = values(startup, key)
            if found:
                lines.append(f"- {key}: {spread(found, 2)}")
        if reasons(startup):
            lines.append(f"- not measured in some rounds: {reasons(startup)}")
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"took {time.perf_counter() - started:.0f} s")
