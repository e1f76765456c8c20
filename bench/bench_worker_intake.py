"""The worker's in-process CPU per attempt: the created message to a Task, the Started, a hold.

Times, in this process, what the worker does per task before its first append: `job_from` (the
message decoded into a Job), `task_from_created` (the Task built from the message's copy), and
the Started triggered on that copy and mapped to its stored event (`LoopStarts._apply`'s work),
for created payloads as the relay publishes them; and an attempt's held report (a progress held
for the next write, as the offline engine's) set up and called off by the attempt's close. Alternate trees round by round to compare
(`--trees /tmp/before/src src`). Prints figures; asserts nothing.

    python bench/bench_worker_intake.py [--n 20000] [--rounds 5] [--trees A B]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

sys.path.insert(0, str(Path(__file__).resolve().parent))
from alternate import best_per_call
from alternate import main as run

ROOT = Path(__file__).resolve().parents[1]


def _payloads() -> list[bytes]:
    """Created messages as the relay publishes them: a plain task and one with every field."""
    from agenttasks.application.bus_payloads import BusEventMapper
    from agenttasks.bus.messages import encode
    from agenttasks.domain.task import Task

    def no_facts(_: Any) -> Any:
        raise AssertionError("a Created carries its own facts")

    mapper = BusEventMapper(no_facts)
    tasks = [
        Task.create(
            title="plain", task_type="summary", task_config={"content": "x"}, created_by="a"
        ),
        Task.create(
            title="all fields ✓",
            task_type="data_analysis",
            task_config={"data": {"x": [1, 2.5, -3e-7]}, "question": "why"},
            created_by="bob",
            priority="urgent",
            template_id=uuid4(),
            template_version=4,
            max_retries=0,
            timeout_seconds=600,
            webhook_url="https://example.com/hook",
        ),
    ]
    payloads = []
    for position, task in enumerate(tasks, start=1):
        payload = mapper.map(task.collect_events()[0], position)
        assert payload is not None
        payloads.append(encode(payload))
    return payloads


def measure(n: int) -> dict[str, float]:
    """Microseconds per call of each step, per payload kind."""
    from agenttasks.application.store import open_event_store
    from agenttasks.bus.consumers import Delivery
    from agenttasks.workers.intake import job_from, task_from_created

    mapper = open_event_store().mapper
    figures: dict[str, float] = {}
    for name, data in zip(("plain", "full"), _payloads(), strict=True):
        delivery = Delivery(data, 1, None)
        job = job_from(delivery)
        assert task_from_created(job) is not None

        def start(job: Any = job) -> None:
            task = task_from_created(job)
            assert task is not None
            task.start(1, "host:1:ab")
            [mapper.to_stored_event(e) for e in task.collect_events()]

        figures[f"{name} job_from"] = best_per_call(lambda d=delivery: job_from(d), n)
        figures[f"{name} task_from_created"] = best_per_call(lambda j=job: task_from_created(j), n)
        figures[f"{name} copy+Started stored"] = best_per_call(start, n)
    figures["held progress: hold + close"] = _held(n)
    return figures


def _held(n: int) -> float:
    """Microseconds of CPU per AgentContext.progress + close with nothing left to save."""
    import asyncio

    from agenttasks.bus.consumers import Delivery
    from agenttasks.settings import Settings
    from agenttasks.workers.context import AgentContext
    from agenttasks.workers.fetch import Fetcher
    from agenttasks.workers.intake import job_from, task_from_created
    from agenttasks.workers.limits import Limits

    task = task_from_created(job_from(Delivery(_payloads()[0], 1, None)))
    limits = Limits.from_settings(Settings())
    fetcher = Fetcher(())  # one for all: each holds an HTTP client

    async def run() -> float:
        best = float("inf")
        for _ in range(3):
            contexts = [
                AgentContext(task, None, None, llm=None, fetcher=fetcher, limits=limits)  # type: ignore[arg-type]
                for _ in range(n)
            ]
            start = time.process_time()
            for ctx in contexts:
                await ctx.progress(10, "held")
                ctx._held.clear()  # as a write takes them (the completion)
                await ctx.close()
            best = min(best, time.process_time() - start)
        return best / n * 1e6

    return asyncio.run(run())


def main() -> None:
    run(__file__, __doc__.splitlines()[0], measure)


if __name__ == "__main__":
    main()
