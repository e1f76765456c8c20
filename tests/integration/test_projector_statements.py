"""What the projector sends Postgres per batch (issue 17, PERF9): its waits, NOTIFYs, statements.

Seen from the wire: libpq's trace of the projector's connection (every message it sends and
receives) and a LISTEN session of our own. The tables each batch leaves are checked too.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import psycopg
from psycopg import pq

from agenttasks import bootstrap
from agenttasks.bus.messages import PurgedEvent, TaskEvent, decode, encode
from agenttasks.projections.base import NOTIFY_CHANNEL, read_announcement
from agenttasks.projections.positions import ProjectionWatcher
from agenttasks.projections.runner import ProjectionRunner, apply_together
from agenttasks.projections.template_usage import NoTemplate
from tests.integration.test_projections import Delivered

STATUS = {"created": "pending", "started": "running", "completed": "completed"}


def task_event(
    position: int, task_id: str, kind: str, *, version: int, template_id: str | None = None
) -> bytes:
    """A task event as the relay publishes it (created, started or completed)."""
    data: dict[str, Any] = {"attempt": 1}
    if kind == "created":
        data = {
            "title": "t", "task_type": "summary", "task_config": {}, "priority": "high",
            "created_by": "alice", "max_retries": 3, "timeout_seconds": 60,
            "template_id": template_id, "template_version": None if template_id is None else 1,
        }  # fmt: skip
    elif kind == "started":
        data["worker_id"] = "w1"
    elif kind == "completed":
        data["result_data"] = {"summary": "Short."}
    return encode(
        TaskEvent(
            position=position,
            task_id=task_id,
            type=kind,
            version=version,
            timestamp=datetime.now(UTC),
            user="alice",
            task_type="summary",
            priority="high",
            update_type="status",
            status=STATUS[kind],
            progress=100 if kind == "completed" else 0,
            message="",
            data=data,
        )
    )


def purged(position: int, task_id: str) -> bytes:
    """The deletion of a task that never started."""
    now = datetime.now(UTC)
    return encode(
        PurgedEvent(
            position=position,
            task_id=task_id,
            timestamp=now,
            actor="alice",
            reason="user",
            user="alice",
            task_type="summary",
            priority="high",
            status="pending",
            created_at=now,
            started_at=None,
            finished_at=None,
            prompt_tokens=None,
            completion_tokens=None,
            template_id=None,
            template_version=None,
            events=1,
        )
    )


def all_runners(database_url: str, connection: psycopg.Connection[Any]) -> list[ProjectionRunner]:
    runners = [ProjectionRunner(p, database_url) for p in bootstrap.projections().values()]
    for runner in runners:
        runner.prepare(connection)
    return runners


@contextmanager
def traced(connection: psycopg.Connection[Any]) -> Iterator[list[str]]:
    """The messages the connection exchanges inside the block (libpq's trace), one per line."""
    lines: list[str] = []
    with tempfile.TemporaryFile("w+") as trace:
        connection.pgconn.trace(trace.fileno())
        connection.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            yield lines
        finally:
            connection.pgconn.untrace()
            trace.seek(0)
            lines.extend(trace.read().splitlines())


def waits(lines: list[str]) -> int:
    """How many times the client sent and then read replies: its round trips."""
    directions = [line[0] for line in lines if line[:1] in "FB"]
    return sum(1 for sent, got in itertools.pairwise(directions) if (sent, got) == ("F", "B"))


async def test_a_batch_waits_twice_and_notifies_once_for_every_read_model(
    database_url: str,
) -> None:
    task_id = str(uuid4())
    watcher = ProjectionWatcher(database_url)
    await watcher.start()
    with (
        psycopg.connect(database_url) as connection,
        psycopg.connect(database_url, autocommit=True) as listener,
    ):
        runners = all_runners(database_url, connection)
        first = [Delivered(task_event(1, task_id, "created", version=1), 1)]
        apply_together(runners, connection, first)  # type: ignore[arg-type]
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        batch = [
            Delivered(task_event(2, task_id, "started", version=2), 2),
            Delivered(task_event(3, task_id, "completed", version=3), 3),
        ]
        with traced(connection) as lines:
            apply_together(runners, connection, batch)  # type: ignore[arg-type]

        # The lock's reply (with the metrics model's read of its task, sent behind it) and the
        # commit's: nothing else waits for Postgres.
        assert waits(lines) == 2, "\n".join(lines)
        announced = [notify.payload for notify in listener.notifies(timeout=1, stop_after=1)]
        assert list(listener.notifies(timeout=0.2)) == [], "one NOTIFY for the batch"
        assert sorted(read_announcement(announced[0])) == [
            (name, 3) for name in sorted(bootstrap.projections())
        ]
        row = connection.execute(
            "SELECT status, (SELECT sum(value) FROM task_metrics WHERE metric = 'completed')"
            " FROM metric_tasks WHERE task_id = %s",
            (task_id,),
        ).fetchone()
        assert row == ("completed", 1), "the metrics model folded with what it read ahead"
    try:
        for name in bootstrap.projections():
            assert await watcher.wait(name, 3, timeout=5), name
    finally:
        await watcher.stop()


def test_tasks_made_without_a_template_send_the_usage_model_no_statement_and_history_goes_at_once(
    database_url: str,
) -> None:
    plain, templated, template = str(uuid4()), str(uuid4()), str(uuid4())
    with psycopg.connect(database_url, prepare_threshold=None) as connection:  # every text sent
        runners = all_runners(database_url, connection)
        first = [
            Delivered(task_event(1, plain, "created", version=1), 1),
            Delivered(task_event(2, templated, "created", version=1, template_id=template), 2),
        ]
        apply_together(runners, connection, first)  # type: ignore[arg-type]
        batch = [
            Delivered(task_event(3, plain, "started", version=2), 3),
            Delivered(task_event(4, templated, "started", version=2), 4),
            Delivered(task_event(5, plain, "completed", version=3), 5),
        ]
        with traced(connection) as lines:
            apply_together(runners, connection, batch)  # type: ignore[arg-type]

        updates = [line for line in lines if "Parse" in line and "template_usage_tasks" in line]
        assert len(updates) == 1, "only the templated task's start: \n" + "\n".join(updates)
        rows = connection.execute(
            "SELECT task_id::text, status FROM template_usage_tasks"
        ).fetchall()
        assert rows == [(templated, "running")]
        # The tasks model writes the batch's three history rows in one statement.
        history = [line for line in lines if "Parse" in line and "json_to_recordset" in line]
        history = [line for line in history if "task_updates" in line]
        assert len(history) == 1, "\n".join(history)
        kinds = connection.execute("SELECT kind FROM task_updates ORDER BY position").fetchall()
        assert [kind for (kind,) in kinds] == [
            "created",
            "created",
            "started",
            "started",
            "completed",
        ]


def test_a_task_id_a_standby_saw_deleted_and_made_again_with_a_template_is_updated(
    database_url: str,
) -> None:
    task_id, template = str(uuid4()), str(uuid4())
    stream = [
        Delivered(task_event(1, task_id, "created", version=1), 1),  # no template
        Delivered(purged(2, task_id), 2),
        Delivered(task_event(3, task_id, "created", version=1, template_id=template), 3),
        Delivered(task_event(4, task_id, "started", version=2), 4),
    ]
    with psycopg.connect(database_url) as mine, psycopg.connect(database_url) as standby:
        runners = all_runners(database_url, mine)
        apply_together(runners, mine, stream[:1])  # type: ignore[arg-type]
        usage = next(r for r in runners if r.projection.name == "template_usage")
        assert isinstance(usage._memo, NoTemplate)
        assert len(usage._memo) == 1
        # The standby applies the deletion and the new creation; this runner never sees them.
        apply_together(all_runners(database_url, standby), standby, stream[:3])  # type: ignore[arg-type]
        apply_together(runners, mine, stream)  # type: ignore[arg-type]

        rows = mine.execute("SELECT template_id::text, status FROM template_usage_tasks").fetchall()
        assert rows == [(template, "running")], "what it remembered was dropped, not trusted"


def test_the_usage_models_memory_of_tasks_stays_within_its_size() -> None:
    memo = NoTemplate(size=3)
    tasks = [str(uuid4()) for _ in range(10)]
    for position, task_id in enumerate(tasks, 1):
        assert not memo.needed(decode(task_event(position, task_id, "created", version=1)))
    assert len(memo) == 3
    # The oldest were forgotten: their events go to the model again (which is always right).
    assert memo.needed(decode(task_event(11, tasks[0], "started", version=2)))
    assert not memo.needed(decode(task_event(12, tasks[-1], "started", version=2)))


def test_a_batch_of_tasks_at_different_steps_sends_one_update_per_table_and_one_metrics_write(
    database_url: str,
) -> None:
    # Five tasks, each at another step of its life in the batch (as under load): the tasks and
    # statistics rows of the three that existed are one UPDATE each, whatever columns each
    # step sets, and the metrics model's states, counters and zeroed rows are one statement.
    tasks = [str(uuid4()) for _ in range(5)]
    kinds = ("created", "started", "completed")
    steps = [(task_id, 1 + n % 3) for n, task_id in enumerate(tasks)]  # the batch's version
    earlier = [(task_id, v) for task_id, last in steps for v in range(1, last)]
    stream = [
        Delivered(task_event(n, task_id, kinds[v - 1], version=v), n)
        for n, (task_id, v) in enumerate([*earlier, *steps], 1)
    ]
    with psycopg.connect(database_url, prepare_threshold=None) as connection:  # every text sent
        runners = all_runners(database_url, connection)
        apply_together(runners, connection, stream[: len(earlier)])  # type: ignore[arg-type]
        with traced(connection) as lines:
            apply_together(runners, connection, stream[len(earlier) :])  # type: ignore[arg-type]
        statuses = connection.execute(
            "SELECT t.id::text, t.status, s.status, m.status FROM tasks t JOIN task_statistics s"
            " ON s.task_id = t.id JOIN metric_tasks m ON m.task_id = t.id"
        ).fetchall()
        pending = connection.execute(
            "SELECT value FROM task_metrics WHERE metric = 'status' AND label = 'pending'"
        ).fetchall()

    parsed = [line for line in lines if line.startswith("F") and "\tParse\t" in line]
    # BEGIN, the lock, the metrics read, its write, the tasks INSERT, UPDATE and history,
    # the statistics INSERT and UPDATE, the tracking, COMMIT (14 before: an UPDATE per set of
    # columns, three metrics writes).
    assert len(parsed) == 11, "\n".join(parsed)
    for table in ("tasks", "task_statistics"):
        updates = [line for line in parsed if f'UPDATE "{table}"' in line]
        assert len(updates) == 1, "\n".join(updates)
    metrics = [line for line in parsed if "metric_tasks" in line or "task_metrics" in line]
    # The read behind the lock, and one write.
    assert len(metrics) == 2, "\n".join(metrics)
    assert {row[0]: row[1:] for row in statuses} == {
        task_id: (STATUS[kinds[v - 1]],) * 3 for task_id, v in steps
    }
    assert pending == [(2,)], "two tasks pending; the rows that went to 0 are gone"
