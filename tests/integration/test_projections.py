"""The task read model: built live from the stream, rebuilt from the store, always the same."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import httpx
import psycopg

from agenttasks import quarantine
from agenttasks.application.bus_payloads import mapper_for
from agenttasks.application.tasks import Actor, NewTask, TaskCommands
from agenttasks.bus.messages import SkippedEvent, TaskEvent, encode
from agenttasks.projections.base import set_position
from agenttasks.projections.positions import ProjectionWatcher
from agenttasks.projections.replay import replay
from agenttasks.projections.runner import ProjectionRunner
from agenttasks.projections.selfcheck import SelfCheck, summarise
from agenttasks.projections.tasks import task_projection
from agenttasks.servers.nats import EmbeddedNats
from tests.integration.api_client import serving, settings_for
from tests.integration.stack import Stack, running_stack
from tests.security.test_poison_events import store_poison
from tests.waiting import wait_until

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
        commands = stack.commands
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


async def test_a_stream_read_again_from_the_start_changes_nothing(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async with running_stack(database_url, nats_server) as stack:
        commands = stack.commands
        for outcome in ("completed", "retried", "cancelled", "pending"):
            lifecycle(commands, outcome, outcome)
        await stack.projected()
        before = snapshot(stack)
        last = stack.runners["tasks"].sequence
        await stack.stop_projectors()

        # A tracking row that forgot its sequence (as before sequences were kept) and one
        # that starts the stream again: every event comes again and changes nothing.
        for sequence in ("NULL", "0"):
            with psycopg.connect(database_url, autocommit=True) as connection:
                connection.execute(f"UPDATE projection_tracking SET sequence = {sequence}")
            runner = await stack.start_projector(task_projection())
            await wait_until(lambda: runner.sequence == last)  # noqa: B023
            await stack.stop_projectors()
            assert runner.position == stack.store.recorder.max_notification_id()
            assert snapshot(stack) == before


async def test_a_replay_from_the_event_store_equals_the_live_read_model(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async with running_stack(database_url, nats_server) as stack:
        commands = stack.commands
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
        task_id = lifecycle(stack.commands, "tampered", "completed")
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
        commands = stack.commands
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
            written = stack.commands.create(ALICE, NewTask("mine", "summary", {"content": "x"}))
            assert written.position is not None
            assert await watcher.wait("tasks", written.position, timeout=10)
            assert stack.rows(f"SELECT title FROM tasks WHERE id = '{written.task_id}'") == [
                ("mine",)
            ]
            assert not await watcher.wait("tasks", written.position + 1000, timeout=0.2)
        finally:
            await watcher.stop()


@dataclass(frozen=True)
class Delivered:
    """What the runner reads of a stream message."""

    data: bytes
    sequence: int
    delivered: int = 1


def created(position: int, task_id: str | None = None) -> bytes:
    data = {
        "title": f"task at {position}", "task_type": "summary", "task_config": {},
        "priority": "high", "created_by": "alice", "max_retries": 3, "timeout_seconds": 60,
    }  # fmt: skip
    return encode(
        TaskEvent(
            position=position,
            task_id=task_id or str(uuid4()),
            type="created",
            version=1,
            timestamp=datetime.now(UTC),
            user="alice",
            task_type="summary",
            priority="high",
            update_type="status",
            status="pending",
            progress=0,
            message="",
            data=data,
        )
    )


def prepared_runner(database_url: str) -> tuple[ProjectionRunner, psycopg.Connection[Any]]:
    runner = ProjectionRunner(task_projection(), database_url)
    connection = psycopg.connect(database_url)
    runner.prepare(connection)
    return runner, connection


def task_count(database_url: str) -> int:
    with psycopg.connect(database_url) as connection:
        return int(connection.execute("SELECT count(*) FROM tasks").fetchone()[0])  # type: ignore[index]


async def test_messages_after_missing_ones_wait_until_the_missing_ones_come(
    database_url: str,
) -> None:
    runner, connection = prepared_runner(database_url)
    with connection:
        runner.apply_batch(connection, [Delivered(created(10), 1)])  # type: ignore[list-item]
        # Sequences 2 and 3 were fetched by a projector that died before its commit.
        later = [Delivered(created(10 + s), s) for s in (4, 5)]
        runner.apply_batch(connection, later)  # type: ignore[arg-type]
        assert (runner.sequence, runner.position, runner.missing) == (1, 10, (2, 3))
        assert task_count(database_url) == 1
        again = [Delivered(created(10 + s), s) for s in (2, 3, 4, 5)]
        runner.apply_batch(connection, again)  # type: ignore[arg-type]
        assert (runner.sequence, runner.position, runner.missing) == (5, 15, None)
        assert task_count(database_url) == 5
        runner.apply_batch(connection, again)  # type: ignore[arg-type]
        assert task_count(database_url) == 5, "a repeat changes nothing"


async def test_a_jump_a_replay_already_covered_is_passed_over(database_url: str) -> None:
    runner, connection = prepared_runner(database_url)
    with connection:
        with connection.transaction(), connection.cursor() as cursor:
            set_position(cursor, "tasks", 50, 0)  # a replay applied the store up to 50
        runner.apply_batch(connection, [Delivered(created(40), 7), Delivered(created(60), 8)])  # type: ignore[list-item]
        assert (runner.sequence, runner.position, runner.missing) == (8, 60, None)
        assert task_count(database_url) == 1, "only the event beyond the replay is applied"


async def test_a_skipped_marker_and_a_poison_event_advance_the_tracking_without_rows(
    database_url: str,
) -> None:
    runner, connection = prepared_runner(database_url)
    marker = encode(
        SkippedEvent(position=2, originator_id=None, reason="MapperDeserialisationError")
    )
    batch = [
        Delivered(created(1), 1),
        Delivered(marker, 2),
        Delivered(created(3, task_id="not-a-uuid"), 3),  # Postgres refuses it: a data error
        Delivered(b"{not json", 4),
        Delivered(created(5), 5),
    ]
    with connection:
        runner.apply_batch(connection, batch)  # type: ignore[arg-type]
        assert (runner.sequence, runner.position) == (5, 5)
        assert task_count(database_url) == 2
        with connection.cursor() as cursor:
            entries = quarantine.pending(cursor, consumer="projector-tasks")
    assert [(e.position, e.originator_id) for e in entries] == [(-4, None), (3, "not-a-uuid")]


async def test_standby_projectors_of_one_read_model_lose_and_repeat_nothing(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async with running_stack(database_url, nats_server) as stack:
        await stack.start_projector(task_projection())  # a second replica of "tasks"
        commands = stack.commands
        for i in range(40):
            lifecycle(commands, f"task {i}", "completed")
        await stack.projected()  # one replica is there; the tracking row says what both did
        newest = stack.store.recorder.max_notification_id()
        assert stack.rows("SELECT position FROM projection_tracking") == [(newest,)]
        assert stack.rows("SELECT count(*) FROM tasks WHERE status = 'completed'") == [(40,)]
        report = replay(
            task_projection(), stack.store, mapper_for(stack.store), database_url, verify=True
        )
        assert report.differences == []


async def test_the_self_check_reports_a_stall_and_missing_rows(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async with running_stack(database_url, nats_server) as stack:
        commands = stack.commands
        lost = lifecycle(commands, "lost", "completed")
        await stack.projected()
        runner = stack.runners["tasks"]
        events = stack.store.recorder.events_table_name  # type: ignore[attr-defined]
        check = SelfCheck([runner], stack.relay.bus, database_url, events, every=1, count_every=0)
        [healthy] = await check.check()
        assert (healthy.stalled, healthy.problem, healthy.row_count) == (False, None, 1)

        await stack.stop_projectors()  # the read model stops while events keep coming
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute("DELETE FROM tasks WHERE id = %s", (lost,))
        lifecycle(commands, "unseen", "pending")
        await wait_until(
            lambda: stack.relay.published_position == stack.store.recorder.max_notification_id()
        )
        await check.check()
        [stalled] = await check.check()
    assert stalled.stalled
    assert stalled.pending == 1
    assert stalled.problem is not None
    assert "stalled: 1 published events not applied" in stalled.problem
    assert "tasks holds 0 rows but the store has 1 creating events" in stalled.problem
    assert summarise([("tasks", True, 1, 0, 1, stalled.problem, 0.5)])["ok"] is False


async def test_ready_fails_while_a_read_model_misses_rows(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async with (
        running_stack(database_url, nats_server) as stack,
        serving(settings_for(database_url, nats_server)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        lost = lifecycle(stack.commands, "lost", "pending")
        await stack.projected()
        events = stack.store.recorder.events_table_name  # type: ignore[attr-defined]
        check = SelfCheck(
            [stack.runners["tasks"]], stack.relay.bus, database_url, events, every=1, count_every=0
        )
        await check.check()
        healthy = await client.get("/ready")
        assert healthy.status_code == 200, healthy.text
        assert healthy.json()["checks"]["read_models"]["tasks"]["rows"] == 1

        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute("DELETE FROM tasks WHERE id = %s", (lost,))
        await check.check()
        broken = await client.get("/ready")
    assert broken.status_code == 503
    entry = broken.json()["checks"]["read_models"]["tasks"]
    assert (entry["rows"], entry["expected_rows"]) == (0, 1)
    assert "events were lost" in entry["problem"]


async def test_live_and_replayed_read_models_agree_around_a_poison_event(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async with running_stack(database_url, nats_server) as stack:
        poisoned, _ = store_poison(database_url)
        done = lifecycle(stack.commands, "after", "completed")
        await stack.projected()
        assert stack.rows("SELECT id FROM tasks") == [(done,)]
        report = replay(
            task_projection(), stack.store, mapper_for(stack.store), database_url, verify=True
        )
    assert report.differences == []
    assert poisoned != done
