"""The task read model: built live from the stream, rebuilt from the store, always the same."""

from __future__ import annotations

import asyncio
import threading
from uuid import UUID

import psycopg

from agenttasks.application.publishing import mapper_for
from agenttasks.application.tasks import Actor, NewTask, TaskCommands
from agenttasks.bus.connection import connect
from agenttasks.bus.messages import STREAM
from agenttasks.projections.positions import ProjectionWatcher
from agenttasks.projections.replay import replay
from agenttasks.projections.tasks import task_projection
from agenttasks.servers.nats import EmbeddedNats
from tests.integration.stack import Stack, running_stack

ALICE = Actor("alice")
TABLES = "SELECT * FROM tasks ORDER BY id", "SELECT * FROM task_updates ORDER BY position"


def lifecycle(commands: TaskCommands, title: str, outcome: str) -> UUID:
    """A task taken through a realistic life: started, progress, partial result, an end."""
    task_id = commands.create(
        ALICE, NewTask(title, "summary", {"content": "Some text."}, priority="high")
    ).task_id
    if outcome == "pending":
        return task_id
    commands.start(task_id, 1, "w1")
    commands.report_progress(task_id, 1, 40, "Read the text")
    commands.record_result(task_id, 1, {"text": "So far"})
    commands.note(task_id, 1, "One source was slow", {"url": "https://example.org"}, error=True)
    if outcome == "completed":
        commands.complete(
            task_id, 1, {"summary": "Short.", "usage": {"prompt_tokens": 3, "total_tokens": 5}}
        )
    elif outcome == "retried":
        commands.fail(task_id, 1, "http_500", "upstream failed", retryable=True)
        commands.retry_automatically(task_id, "transient failure")
    elif outcome == "cancelled":
        commands.cancel(ALICE, task_id)
    return task_id


def snapshot(stack: Stack) -> list[list[tuple[object, ...]]]:
    return [stack.rows(query) for query in TABLES]


async def test_the_projector_builds_tasks_and_their_update_history(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async with running_stack(database_url, nats_server) as stack:
        commands = TaskCommands(stack.store)
        done = lifecycle(commands, "done", "completed")
        retried = lifecycle(commands, "again", "retried")
        await stack.projected()

        row = stack.rows(
            f"SELECT status, progress, result_data, usage, attempt, completed_at IS NOT NULL"
            f" FROM tasks WHERE id = '{done}'"
        )[0]
        assert row == ("completed", 100, {"summary": "Short.", "usage": row[3]}, row[3], 1, True)
        assert row[3] == {"prompt_tokens": 3, "total_tokens": 5}
        assert stack.rows(
            f"SELECT status, attempt, error_message FROM tasks WHERE id = '{retried}'"
        ) == [("pending", 2, None)]
        kinds = stack.rows(
            f"SELECT kind FROM task_updates WHERE task_id = '{done}' ORDER BY position"
        )
        assert [k for (k,) in kinds] == [
            "created",
            "started",
            "progress",
            "result",
            "info",
            "completed",
        ]


async def test_a_redelivered_stream_changes_nothing(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async with running_stack(database_url, nats_server) as stack:
        commands = TaskCommands(stack.store)
        for outcome in ("completed", "retried", "cancelled", "pending"):
            lifecycle(commands, outcome, outcome)
        await stack.projected()
        before = snapshot(stack)
        await stack.stop_projectors()

        # Deleting the durable consumer makes JetStream deliver every event again.
        bus = await connect(nats_server.url_for("projector"), "test")
        await bus.js.delete_consumer(STREAM, "projector-tasks")
        await bus.close()
        runner = await stack.start_projector(task_projection())
        info_bus = await connect(nats_server.url_for("projector"), "test")
        deadline = asyncio.get_running_loop().time() + 20
        while True:  # every event redelivered, applied (or skipped) and acked
            info = await info_bus.js.consumer_info(STREAM, "projector-tasks")
            if info.num_pending == 0 and info.num_ack_pending == 0 and info.delivered.stream_seq:
                break
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)  # polling the server: there is no local event to await
        await info_bus.close()
        assert info.delivered.stream_seq == stack.store.recorder.max_notification_id()
        assert runner.position == stack.store.recorder.max_notification_id()
        assert snapshot(stack) == before


async def test_a_replay_from_the_event_store_equals_the_live_read_model(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async with running_stack(database_url, nats_server) as stack:
        commands = TaskCommands(stack.store)
        for i, outcome in enumerate(["completed", "retried", "cancelled", "pending"] * 3):
            lifecycle(commands, f"task {i}", outcome)
        await stack.projected()
        live = snapshot(stack)

        mapper = mapper_for(stack.store)
        report = replay(task_projection(), stack.store, mapper, database_url, verify=True)
        assert report.differences == []
        assert report.events == stack.store.recorder.max_notification_id()

        switched = replay(task_projection(), stack.store, mapper, database_url)
        assert switched.switched
        assert snapshot(stack) == live


async def test_verify_reports_a_tampered_row(database_url: str, nats_server: EmbeddedNats) -> None:
    async with running_stack(database_url, nats_server) as stack:
        task_id = lifecycle(TaskCommands(stack.store), "tampered", "completed")
        await stack.projected()
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute("UPDATE tasks SET progress = 7 WHERE id = %s", (task_id,))
            connection.execute("DELETE FROM task_updates WHERE kind = 'info'")

        report = replay(
            task_projection(), stack.store, mapper_for(stack.store), database_url, verify=True
        )

        assert any(
            f"id={task_id}: progress: live 7 != rebuilt 100" in d for d in report.differences
        )
        assert any("missing from the live table" in d for d in report.differences)
        assert stack.rows(f"SELECT progress FROM tasks WHERE id = '{task_id}'") == [(7,)], (
            "verify switches nothing"
        )


async def test_a_replay_switches_tables_while_events_keep_arriving(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async with running_stack(database_url, nats_server) as stack:
        commands = TaskCommands(stack.store)
        for i in range(30):
            lifecycle(commands, f"before {i}", "completed")
        writing = threading.Thread(
            target=lambda: [lifecycle(commands, f"during {i}", "completed") for i in range(30)]
        )
        writing.start()
        report = await asyncio.to_thread(
            replay, task_projection(), stack.store, mapper_for(stack.store), database_url
        )
        await asyncio.to_thread(writing.join)
        assert report.switched
        await stack.projected()

        positions = [
            p for (p,) in stack.rows("SELECT position FROM task_updates ORDER BY position")
        ]
        stored = stack.store.recorder.select_notifications(0, 10_000, inclusive_of_start=False)
        assert positions == [n.id for n in stored]
        assert stack.rows("SELECT count(*) FROM tasks WHERE status = 'completed'") == [(60,)]
        verified = replay(
            task_projection(), stack.store, mapper_for(stack.store), database_url, verify=True
        )
        assert verified.differences == []


async def test_a_writer_can_wait_for_its_own_write_to_be_projected(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async with running_stack(database_url, nats_server) as stack:
        watcher = ProjectionWatcher(database_url)
        await watcher.start()
        try:
            written = TaskCommands(stack.store).create(
                ALICE, NewTask("mine", "summary", {"content": "x"})
            )
            assert written.position is not None
            assert await watcher.wait("tasks", written.position, timeout=10)
            assert stack.rows(f"SELECT title FROM tasks WHERE id = '{written.task_id}'") == [
                ("mine",)
            ]
            assert not await watcher.wait("tasks", written.position + 1000, timeout=0.2)
        finally:
            await watcher.stop()
