"""Property: for any event history, the read models built incrementally equal the replayed ones.

Histories come from Task aggregates driven by random commands (refused ones leave no event), so
every history is one the domain allows, interleaved across tasks. The incremental side is the
live runner's own code (ProjectionRunner.apply_batch, batches of random size, some delivered
twice) or the batch handler on random splits; the other side is `replay(..., verify=True)`,
which rebuilds from the event store and reports every differing row.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.conninfo import make_conninfo

from agenttasks.application.bus_payloads import mapper_for
from agenttasks.application.store import EventStore, open_event_store, read_log
from agenttasks.bus.messages import encode
from agenttasks.domain.rules import PRIORITIES, TASK_TYPES, RuleViolation
from agenttasks.domain.task import Task
from agenttasks.projections.base import Projection, set_position, tracked_position
from agenttasks.projections.replay import replay
from agenttasks.projections.runner import ProjectionRunner
from agenttasks.projections.statistics import statistics_projection
from agenttasks.projections.tasks import task_projection
from agenttasks.projections.template_usage import template_usage_projection

TEMPLATES = (None, uuid4(), uuid4())
USAGES: tuple[dict[str, Any] | None, ...] = (
    None,
    {"prompt_tokens": 12, "completion_tokens": 30},
    {"prompt_tokens": 5},
    {"completion_tokens": "many"},
)
COMMANDS = (
    "start", "progress", "result", "complete", "fail", "cancel", "retry", "auto", "note", "call",
)  # fmt: skip
COSTS = (None, "0", "0.0003012", "1.25")  # a model call's cost; None: no known price
_schemas = itertools.count(1)


@dataclass(frozen=True)
class Delivered:
    """What the runner reads of a JetStream delivery."""

    data: bytes
    sequence: int  # the stream sequence: the relay publishes every event, in order
    delivered: int = 1


def command(task: Task, name: str, n: int) -> None:
    attempt = task.attempt
    if name == "start":
        task.start(attempt, f"w{n}")
    elif name == "progress":
        task.report_progress(attempt, min(100, task.progress + n * 10), "on")
    elif name == "result":
        task.record_result(attempt, {"text": "so far"})
    elif name == "complete":
        usage = USAGES[n % len(USAGES)]
        task.complete(attempt, {"text": "done", **({"usage": usage} if usage else {})})
    elif name == "fail":
        task.fail(attempt, "boom", "it broke", retryable=n % 2 == 0)
    elif name == "cancel":
        task.cancel("alice")
    elif name == "retry":
        task.retry("alice")
    elif name == "auto":
        task.retry("system", automatic=True)
    elif name == "call":
        task.record_model_call(
            attempt, step=task.model_calls + 1, model="m", provider="p", prompt_tokens=10 * n,
            completion_tokens=n, cached_tokens=n, usage="reported", latency_ms=5,
            cost_usd=COSTS[n % len(COSTS)], price_source="test", price_version=None,
        )  # fmt: skip
    else:
        task.note(attempt, "a note", error=n % 2 == 0)


steps = st.lists(
    st.tuples(st.integers(0, 9), st.sampled_from(COMMANDS), st.integers(0, 5)), max_size=120
)


def history(plan: list[tuple[int, str, int]]) -> EventStore:
    """An in-memory store holding the events of `plan` (refused commands store nothing)."""
    store = open_event_store()
    tasks: dict[int, Task] = {}
    for index, name, n in plan:
        task = tasks.get(index)
        if task is None:
            template = TEMPLATES[n % len(TEMPLATES)]
            task = tasks[index] = Task.create(
                title=f"task {index}",
                task_type=TASK_TYPES[n % len(TASK_TYPES)],
                task_config={},
                created_by=("alice", "bob")[index % 2],
                priority=PRIORITIES[(index + n) % len(PRIORITIES)],
                template_id=template,
                template_version=1 if template else None,
                max_retries=2,
            )
        else:
            try:
                command(task, name, n)
            except RuleViolation:
                continue
        store.save(task)
    return store


def apply_incrementally(
    projection: Projection, url: str, store: EventStore, sizes: list[int], use_runner: bool
) -> None:
    mapper = mapper_for(store)
    events = [e for item in read_log(store) if (e := mapper.map(item.event, item.position))]
    runner = ProjectionRunner(projection, url, bus=None)  # type: ignore[arg-type]
    with psycopg.connect(url) as connection:
        runner.prepare(connection)
        start, batches = 0, itertools.cycle(sizes or [1])
        while start < len(events):
            size = next(batches)
            batch = events[start : start + size]
            if use_runner:
                # A redelivered earlier batch rides along: it must change nothing.
                again = events[max(0, start - size) : start] if size % 3 == 0 else []
                first = start - len(again)
                deliveries = [
                    Delivered(encode(e), first + n + 1) for n, e in enumerate(again + batch)
                ]
                runner.apply_batch(connection, deliveries)  # type: ignore[arg-type]
            else:
                with connection.transaction(), connection.cursor() as cursor:
                    tracked_position(cursor, projection.name, lock=True)
                    with connection.pipeline():
                        projection.apply_many(cursor, projection.live_tables(), batch)
                    set_position(cursor, projection.name, batch[-1].position)
            start += size


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    plan=steps,
    sizes=st.lists(st.integers(1, 25), min_size=1, max_size=6),
    use_runner=st.booleans(),
)
def test_incremental_statistics_usage_and_tasks_equal_the_replayed_ones(
    database_url: str, plan: list[tuple[int, str, int]], sizes: list[int], use_runner: bool
) -> None:
    store = history(plan)
    schema = f"property_{next(_schemas)}"
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    url = make_conninfo(database_url, options=f"-c search_path={schema}")
    try:
        projections = (statistics_projection(), template_usage_projection(), task_projection())
        for projection in projections:
            apply_incrementally(projection, url, store, sizes, use_runner)
            report = replay(projection, store, mapper_for(store), url, verify=True)
            assert report.differences == [], projection.name
            assert report.position == (store.recorder.max_notification_id() or 0)
        with psycopg.connect(url) as connection:
            rows = connection.execute("SELECT count(*) FROM task_statistics").fetchone()
        assert rows == (len({i for i, _, _ in plan}),), "one row per task"
    finally:
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


def test_the_fold_of_a_batch_is_what_one_by_one_leaves(database_url: str) -> None:
    """A fixed history where one batch holds a task's whole life and another only its end."""
    plan = [(0, "", 0), (0, "start", 1), (1, "", 1), (0, "fail", 1), (0, "retry", 0),
            (1, "start", 0), (0, "start", 2), (0, "complete", 1), (1, "cancel", 0)]  # fmt: skip
    store = history(plan)
    schema = f"property_{next(_schemas)}"
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    url = make_conninfo(database_url, options=f"-c search_path={schema}")
    projection = statistics_projection()
    apply_incrementally(projection, url, store, [4, 100], use_runner=False)
    report = replay(projection, store, mapper_for(store), url, verify=True)
    assert report.differences == []
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT status, started_at IS NOT NULL, finished_at IS NOT NULL, prompt_tokens,"
            " completion_tokens FROM task_statistics ORDER BY created_at"
        ).fetchall()
    assert rows == [("completed", True, True, 12, 30), ("cancelled", True, True, None, None)]
