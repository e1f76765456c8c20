"""The tasks read model folds each task's events of a batch into one row write (issue 17, PERF16).

Seen from the wire (libpq's trace of the projector's connection): one statement writes every
created task's row, one every other task's; the rows equal those the same events leave one
batch each, in a schema of their own.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

import psycopg
from psycopg.conninfo import make_conninfo

from agenttasks.bus.messages import TaskEvent, encode
from agenttasks.projections.runner import ProjectionRunner, apply_together
from agenttasks.projections.statistics import statistics_projection
from agenttasks.projections.tasks import task_projection
from tests.integration.test_projections import Delivered
from tests.integration.test_projector_statements import traced

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CREATED = {
    "title": "t", "task_type": "summary", "task_config": {"text": "x", "n": [1, None]},
    "priority": "high", "created_by": "alice", "max_retries": 3, "timeout_seconds": 60,
}  # fmt: skip


def call(cost: str | None) -> dict[str, Any]:
    return {
        "attempt": 1, "step": 1, "model": "m", "provider": "p", "prompt_tokens": 10,
        "completion_tokens": 3, "cached_tokens": 2, "usage": "reported", "latency_ms": 5,
        "cost_usd": cost, "price_source": "test", "price_version": None,
    }  # fmt: skip


def stream(a: str, b: str) -> list[Delivered]:
    """B created alone; then A's whole life and B's start, calls, failure, retry and restart."""
    events = [
        (b, "created", "pending", 0, CREATED),
        (a, "created", "pending", 0, CREATED),
        (b, "started", "running", 0, {"attempt": 1, "worker_id": "w1"}),
        (a, "started", "running", 0, {"attempt": 1, "worker_id": "w2"}),
        (b, "model_call", "running", 10, call("1.25")),
        (a, "model_call", "running", 20, call("0.0003012")),
        (a, "model_call", "running", 30, call(None)),
        (a, "progress", "running", 50, {"attempt": 1, "progress": 50, "message": "half"}),
        (b, "failed", "failed", 10, {
            "attempt": 1, "error_kind": "timeout", "error_message": "slow", "retryable": True,
            "progress": 10,
        }),
        (a, "completed", "completed", 100, {
            "attempt": 1, "result_data": {"text": "done", "usage": {"prompt_tokens": 20}},
        }),
        (b, "retried", "pending", 0, {
            "attempt": 2, "by": "system", "automatic": True, "reason": "timeout",
        }),
        (b, "started", "running", 0, {"attempt": 2, "worker_id": "w3"}),
    ]  # fmt: skip
    versions: dict[str, int] = {}
    delivered = []
    for n, (task_id, kind, status, progress, data) in enumerate(events, 1):
        versions[task_id] = versions.get(task_id, 0) + 1
        event = TaskEvent(
            position=n * 2,  # positions may have gaps
            task_id=task_id,
            type=kind,
            version=versions[task_id],
            timestamp=T0 + timedelta(milliseconds=n),
            user="alice",
            task_type="summary",
            priority="high",
            update_type="status",
            status=status,
            progress=progress,
            message=kind,
            data=data,
        )
        delivered.append(Delivered(encode(event), n))
    return delivered


ROWS = "SELECT id::text, to_jsonb(t) - 'id' FROM tasks t ORDER BY id"


def test_a_batch_writes_each_tasks_row_once_and_leaves_what_one_by_one_leaves(
    database_url: str,
) -> None:
    a, b = str(uuid4()), str(uuid4())
    deliveries = stream(a, b)
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("CREATE SCHEMA one_by_one")
    single = make_conninfo(database_url, options="-c search_path=one_by_one")
    with psycopg.connect(single) as connection:
        runner = ProjectionRunner(task_projection(), single)
        runner.prepare(connection)
        for delivery in deliveries:
            runner.apply_batch(connection, [delivery])  # type: ignore[list-item]
        expected = connection.execute(ROWS).fetchall()

    with psycopg.connect(database_url, prepare_threshold=None) as connection:  # every text sent
        runner = ProjectionRunner(task_projection(), database_url)
        runner.prepare(connection)
        runner.apply_batch(connection, deliveries[:1])  # type: ignore[arg-type]
        with traced(connection) as lines:
            runner.apply_batch(connection, deliveries[1:])  # type: ignore[arg-type]
        rows = connection.execute(ROWS).fetchall()
        history = connection.execute("SELECT count(*) FROM task_updates").fetchone()
        # The retry's cleared columns are SQL NULLs, not JSON nulls (what the old UPDATE left).
        cleared = connection.execute(
            "SELECT result_data IS NULL AND usage IS NULL AND error_kind IS NULL FROM tasks"
            " WHERE id = %s",
            (b,),
        ).fetchone()

    writes = [
        line
        for line in lines
        if "Parse" in line and ('INSERT INTO "tasks"' in line or 'UPDATE "tasks"' in line)
    ]
    # A's created row with its whole life folded in; B's five events in one UPDATE.
    assert len(writes) == 2, "\n".join(writes)
    assert rows == expected
    assert history == (len(deliveries),)
    assert cleared == (True,)
    by_id = dict(rows)
    assert by_id[a]["status"] == "completed"
    assert by_id[a]["usage"] == {"prompt_tokens": 20}
    assert by_id[a]["task_config"] == {"text": "x", "n": [1, None]}
    assert (by_id[a]["model_calls"], by_id[a]["unpriced_calls"]) == (2, 1)
    assert Decimal(str(by_id[a]["cost_usd"])) == Decimal("0.0003012")
    assert by_id[b]["status"] == "running"
    assert (by_id[b]["attempt"], by_id[b]["worker_id"]) == (2, "w3")
    assert (by_id[b]["error_kind"], by_id[b]["completed_at"], by_id[b]["result_data"]) == (
        None,
        None,
        None,
    )
    assert Decimal(str(by_id[b]["cost_usd"])) == Decimal("1.25")
    assert (by_id[b]["prompt_tokens"], by_id[b]["version"]) == (10, 6)


def test_a_batch_reads_the_rows_it_updates_by_key_not_by_scanning_the_table(
    database_url: str,
) -> None:
    # json_to_recordset is guessed at 100 rows: on a table of a few thousand, the planner
    # preferred hashing a sequential scan of every row, for each batch.
    a, b = str(uuid4()), str(uuid4())
    deliveries = stream(a, b)
    runners = [ProjectionRunner(task_projection(), database_url)]
    runners.append(ProjectionRunner(statistics_projection(), database_url))
    with (
        psycopg.connect(database_url) as connection,
        psycopg.connect(database_url, autocommit=True) as observer,
    ):
        for runner in runners:
            runner.prepare(connection)
        apply_together(runners, connection, deliveries[:2])  # type: ignore[arg-type]
        for table, key in (("tasks", "id"), ("task_statistics", "task_id")):
            # Other tasks' rows, made by copying B's, before the stream's positions.
            columns = [
                name
                for (name,) in connection.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
                    " AND column_name NOT IN (%s, 'last_position')",
                    (table, key),
                )
            ]
            names = ", ".join(columns)
            connection.execute(
                f"INSERT INTO {table} ({key}, last_position, {names})"
                f" SELECT gen_random_uuid(), 1, {names} FROM {table}, generate_series(1, 5000)"
                f" WHERE {key} = %s",
                (b,),
            )
            connection.execute(f"ANALYZE {table}")
        connection.commit()

        def scans() -> list[int]:
            observer.execute("SELECT pg_stat_clear_snapshot()")
            rows = observer.execute(
                "SELECT relname, seq_scan FROM pg_stat_user_tables"
                " WHERE relname IN ('tasks', 'task_statistics') ORDER BY relname"
            ).fetchall()
            return [count for _, count in rows]

        connection.execute("SELECT pg_stat_force_next_flush()")
        connection.commit()
        before = scans()
        for delivery in deliveries[2:]:  # one event a batch, each an UPDATE of an old row
            apply_together(runners, connection, [delivery])  # type: ignore[list-item]
        connection.execute("SELECT pg_stat_force_next_flush()")
        connection.commit()
        connection.execute("SELECT 1")  # the flush happens once the session is idle again
        connection.commit()
        assert scans() == before
        status = connection.execute("SELECT status FROM tasks WHERE id = %s", (b,)).fetchone()
        assert status == ("running",)
