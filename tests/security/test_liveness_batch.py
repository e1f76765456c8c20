"""The liveness job is bounded like every sweep: thousands of dead workers' rows are marked and
removed AGENTTASKS_MAINTENANCE_BATCH at a time, never in one long-locking statement."""

from __future__ import annotations

from datetime import timedelta

import psycopg

from agenttasks.maintenance.jobs import WorkerLiveness
from agenttasks.workers import heartbeats

ROW = """INSERT INTO worker_heartbeats (worker_id, host, pid, task_types, concurrency,
    heartbeat_seconds, started_at, last_heartbeat, state, ended_at)
VALUES (%s, 'h', 1, ARRAY['summary'], 1, 5, now() - interval '3 days',
    now() - %s::interval, %s, %s)"""


def states(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT state, count(*) FROM worker_heartbeats GROUP BY state"
        ).fetchall()
    return {str(state): int(count) for state, count in rows}


async def test_a_liveness_sweep_marks_and_removes_at_most_its_batch(database_url: str) -> None:
    with psycopg.connect(database_url) as connection, connection.cursor() as cursor:
        heartbeats.ensure_table(cursor)
        for n in range(5):  # silent for an hour: lost
            cursor.execute(ROW, (f"silent-{n}", "1 hour", "alive", None))
        for n in range(4):  # stopped two days ago: to be forgotten
            cursor.execute(ROW, (f"gone-{n}", "2 days", "stopped", "-infinity"))
        cursor.execute(ROW, ("fresh", "0 seconds", "alive", None))
    liveness = WorkerLiveness(
        database_url, lost_after=timedelta(minutes=1), forget_after=timedelta(days=1), batch=2
    )

    first = await liveness.sweep()
    assert (first.done, first.more) == (4, True)  # 2 marked + 2 removed: the bound stopped it
    assert states(database_url) == {"alive": 4, "lost": 2, "stopped": 2}
    second = await liveness.sweep()
    assert (second.done, second.more) == (4, True)
    assert states(database_url) == {"alive": 2, "lost": 4}
    # The newly lost ended just now: kept until AGENTTASKS_WORKER_FORGET_SECONDS has passed.
    third = await liveness.sweep()
    assert (third.done, third.more) == (1, False)
    assert states(database_url) == {"alive": 1, "lost": 5}
