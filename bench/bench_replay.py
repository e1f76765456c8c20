"""Replay speed: the statistics rebuild beside the raw rate of reading the notification log.

Stores N events (default 1,000,000) in a fresh database on an embedded PostgreSQL (or on
--database-url), written as realistic task lives through EventStore.save of many aggregates at
once, then measures in the same run:

- raw read: `read_log` over the whole log (select_notifications + decoding each event), the
  floor any rebuild pays; also the rows-only rate (select_notifications without decoding);
- the statistics rebuild: `agenttasks replay statistics` (projections/replay.py: fresh tables,
  commit every 5,000 events, switch), events per second over every stored event;
- for comparison, the template_usage and tasks rebuilds.

Target: the statistics rebuild at least half the raw read rate. Prints figures and writes them
to bench/results-replay.txt; asserts nothing.

    python bench/bench_replay.py [--events 1000000] [--database-url URL] [--skip-others]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from uuid import uuid4

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from agenttasks.application.bus_payloads import mapper_for
from agenttasks.application.store import EventStore, close, open_event_store, read_log
from agenttasks.domain.task import Task
from agenttasks.projections.replay import replay
from agenttasks.projections.statistics import statistics_projection
from agenttasks.projections.tasks import task_projection
from agenttasks.projections.template_usage import template_usage_projection
from agenttasks.settings import Settings

RESULTS = Path(__file__).with_name("results-replay.txt")
TYPES = ("summary", "research", "content_generation", "data_analysis", "custom")
PRIORITIES = ("low", "normal", "high", "urgent")
TEMPLATES = [uuid4() for _ in range(20)]
SAVE_BATCH = 200  # task lives per save(): ~1,400 events, ~400 KB


def life(rng: random.Random) -> Task:
    """One task through a typical life: ~7 events, some failing, retried or cancelled."""
    template = rng.choice(TEMPLATES) if rng.random() < 0.3 else None
    task = Task.create(
        title="bench",
        task_type=rng.choice(TYPES),
        task_config={"content": "Some text to work on."},
        created_by=f"user{rng.randrange(50)}",
        priority=rng.choice(PRIORITIES),
        template_id=template,
        template_version=1 if template else None,
    )
    fate = rng.random()
    if fate < 0.05:
        return task  # still pending
    task.start(1, "w1")
    task.report_progress(1, 30, "Fetched the sources")
    task.report_progress(1, 70, "Drafted")
    task.record_result(1, {"text": "partial"})
    if fate < 0.12:
        task.cancel("user")
    elif fate < 0.22:
        task.fail(1, "http_500", "upstream failed", retryable=True)
        task.retry("system", automatic=True)
        task.start(2, "w2")
        task.complete(
            2, {"text": "done", "usage": {"prompt_tokens": 900, "completion_tokens": 200}}
        )
    else:
        usage = {
            "prompt_tokens": rng.randrange(100, 2000),
            "completion_tokens": rng.randrange(50, 800),
        }
        task.complete(1, {"summary": "A short summary.", "usage": usage})
    return task


def fill(store: EventStore, events: int) -> tuple[int, float]:
    """Stores at least `events` events; returns (stored, seconds)."""
    rng = random.Random(7)
    stored, started = 0, time.perf_counter()
    while stored < events:
        batch = []
        # Not more at once: one INSERT statement of ~1 MB or more hangs psycopg 3.3.9's
        # pipeline mode here (the server waits in ClientRead), and eventsourcing always
        # saves in pipeline mode.
        while stored < events and len(batch) < SAVE_BATCH:
            task = life(rng)
            batch.append(task)
            stored += len(task.pending_events)
        store.save(*batch)
        print(f"\rwriting {stored:>10,}/{events:,}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return stored, time.perf_counter() - started


def raw_read(store: EventStore) -> tuple[int, float, float]:
    """(events, decoded events/s, rows/s without decoding)."""
    started = time.perf_counter()
    count = sum(1 for _ in read_log(store, batch=5000))
    decoded = count / (time.perf_counter() - started)
    started, after, rows = time.perf_counter(), 0, 0
    while notifications := store.recorder.select_notifications(
        start=after, limit=5000, inclusive_of_start=False
    ):
        rows += len(notifications)
        after = notifications[-1].id
    return count, decoded, rows / (time.perf_counter() - started)


def progress(name: str) -> Callable[[int, int, float], None]:
    def show(position: int, newest: int, rate: float) -> None:
        print(f"\r{name:<16} {position:>10,}/{newest:,} {rate:>10,.0f} events/s", end="",
              file=sys.stderr, flush=True)  # fmt: skip

    return show


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--database-url", help="an empty database (default: embedded Postgres)")
    parser.add_argument("--skip-others", action="store_true", help="only the statistics rebuild")
    args = parser.parse_args()
    # A SIGTERM unwinds like Ctrl-C, so the embedded server is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    server = None
    if args.database_url:
        url = args.database_url
    else:
        from agenttasks.servers.postgres import create_database, start_postgres

        scratch = Path(tempfile.mkdtemp(prefix="bench-replay-"))
        server = start_postgres(scratch / "postgres")
        url = create_database(server.url, "bench_replay")
    store = open_event_store(Settings(database_url=url).eventsourcing_env())
    lines = [f"machine: {os.cpu_count()} cores, {platform.python_implementation()} "
             f"{platform.python_version()}; embedded PostgreSQL; one process"]  # fmt: skip
    try:
        stored, seconds = fill(store, args.events)
        lines.append(f"stored {stored:,} events in {seconds:.1f}s ({stored / seconds:,.0f} events/s, "
                     f"EventStore.save of {SAVE_BATCH} task lives at a time)")  # fmt: skip
        _, decoded, rows = raw_read(store)
        lines.append(f"raw read of the log:   {decoded:>9,.0f} events/s decoded (read_log); "
                     f"{rows:,.0f} rows/s undecoded")  # fmt: skip
        chosen = [statistics_projection()]
        if not args.skip_others:
            chosen += [template_usage_projection(), task_projection()]
        rates = {}
        for projection in chosen:
            report = replay(projection, store, mapper_for(store), url,
                            progress=progress(projection.name))  # fmt: skip
            print(file=sys.stderr)
            rates[projection.name] = report.rate
            lines.append(
                f"{projection.name + ' rebuild:':<22} {report.rate:>9,.0f} events/s "
                f"({report.events:,} events in {report.seconds:.1f}s) = "
                f"{report.rate / decoded:.2f} x raw read"
            )
        _, again, _ = raw_read(store)
        lines.append(f"raw read again:        {again:>9,.0f} events/s decoded")
        ratio = rates["statistics"] / max(decoded, again)
        verdict = "meets" if ratio >= 0.5 else f"falls short of ({ratio / 0.5:.0%} of)"
        lines.append(f"statistics rebuild / best raw read = {ratio:.2f}: {verdict} the 0.5 target")
    finally:
        close(store)
        if server is not None:
            server.stop()
            shutil.rmtree(scratch, ignore_errors=True)  # a million events fill a gigabyte
    text = "\n".join(lines)
    print(text)
    RESULTS.write_text(text + "\n")


if __name__ == "__main__":
    main()
