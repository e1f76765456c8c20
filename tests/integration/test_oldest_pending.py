"""The oldest pending age (Workers view, agenttasks_queue_oldest_age_seconds) counts from when a
task was queued: a task created long ago and retried just now has waited seconds, not days
(counted from its creation, every retry of an old task fired the backlog alert at once)."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool

from agenttasks import bootstrap
from agenttasks.application.tasks import Actor, NewTask
from agenttasks.projections.worker_queries import oldest_pending_age
from agenttasks.servers.nats import EmbeddedNats
from tests.integration.stack import running_stack

ANN = Actor("ann")
BODY = {"content": "The tide came in twice today.", "urls": [], "max_length": 50}


async def test_a_retried_task_waits_from_its_retry_and_a_queued_one_from_its_creation(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    bootstrap.ensure_read_models(database_url)
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        database_url, min_size=1, max_size=2, open=False
    )
    await pool.open()
    try:
        async with running_stack(database_url, nats_server) as stack:
            commands = stack.commands
            old = commands.create(ANN, NewTask("Old", "summary", BODY)).task_id
            commands.start(old, 1, "w1")
            commands.fail(old, 1, "model_error", "broke")
            commands.retry(ANN, old)  # pending again, queued now
            await stack.projected()
            # As if it had been created two days ago.
            stack.rows(
                f"UPDATE tasks SET created_at = created_at - interval '2 days' WHERE id = '{old}'"
                " RETURNING id"
            )
            assert (await oldest_pending_age(pool) or 0) < 3600

            waiting = commands.create(ANN, NewTask("Waiting", "summary", BODY)).task_id
            await stack.projected()
            stack.rows(
                "UPDATE tasks SET created_at = created_at - interval '10 minutes',"
                f" updated_at = updated_at - interval '10 minutes' WHERE id = '{waiting}'"
                " RETURNING id"
            )
            age = await oldest_pending_age(pool)
            assert age is not None
            assert 600 <= age < 3600  # the one never taken since its creation leads
    finally:
        await pool.close()
