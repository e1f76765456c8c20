"""The relay's purge of deleted tasks' stream messages: only once every read model has passed the
deletion, and on the connection the relay hands it (it opens none of its own: it used to open
one every idle second)."""

from __future__ import annotations

import asyncio

import psycopg

from agenttasks.bootstrap import ensure_read_models
from agenttasks.bus.connection import connect
from agenttasks.bus.messages import STREAM, task_subject
from agenttasks.deletion import StreamPurge
from agenttasks.servers.nats import EmbeddedNats
from tests.integration.test_bus import task_event


async def test_a_deletion_is_purged_from_the_stream_once_every_read_model_passed_it(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    await asyncio.to_thread(ensure_read_models, database_url)
    relay = await connect(nats_server.url_for("relay"), "test-relay")
    doomed, kept = task_event(1, "completed"), task_event(2, "completed")
    purge = StreamPurge(["tasks", "metrics"])  # no database URL: it cannot connect by itself
    try:
        await relay.ensure_stream()
        await relay.publish_in_order([doomed, kept], 0)
        async with await psycopg.AsyncConnection.connect(
            database_url, autocommit=True
        ) as connection:
            await connection.execute(
                "INSERT INTO task_deletions (task_id, task_type, priority, position,"
                " stored_deleted) VALUES (%s, 'summary', 'normal', 10, true)",
                (doomed.task_id,),
            )
            assert await purge(relay, connection) == 0  # no read model has run yet
            await connection.execute(
                "INSERT INTO projection_tracking (name, position) VALUES ('tasks', 12)"
            )
            assert await purge(relay, connection) == 0  # `metrics` has not: it would see holes
            await connection.execute(
                "INSERT INTO projection_tracking (name, position) VALUES ('metrics', 9)"
            )
            assert await purge(relay, connection) == 0  # `metrics` is before the deletion
            await connection.execute(
                "UPDATE projection_tracking SET position = 10 WHERE name = 'metrics'"
            )
            assert await purge(relay, connection) == 1
            assert await purge(relay, connection) == 0  # done once: the intent row is gone
            rows = await (
                await connection.execute("SELECT count(*) FROM task_deletions")
            ).fetchone()
            assert rows == (0,)
        info = await relay.js.stream_info(STREAM, subjects_filter=task_subject())
        assert set(info.state.subjects or {}) == {
            task_subject(
                task_type="summary", priority="normal", task_id=kept.task_id, kind="completed"
            )
        }
    finally:
        await relay.close()
