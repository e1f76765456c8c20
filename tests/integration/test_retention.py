"""Retention on real servers: `agenttasks purge --older-than` deletes finished tasks that ended
before the cutoff (a dry run deletes nothing), in batches, resumably; statistics keep them;
`replay all --verify` is clean; the stream gets its max_age.

One stack for the module (database, NATS, relay, every read model's projector).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from agenttasks import bootstrap, cli, purge_command
from agenttasks.application.store import history
from agenttasks.application.tasks import Actor, TaskNotFound
from agenttasks.application.user_log import UserLog
from agenttasks.bus.connection import Bus, connect
from agenttasks.bus.messages import STREAM
from agenttasks.deletion import TABLE, Deleter
from agenttasks.retention import Purger
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.servers.postgres import EmbeddedPostgres, create_database
from agenttasks.settings import Settings
from agenttasks.webhooks import store as webhooks
from tests.integration.stack import Stack, running_stack
from tests.integration.test_deletion import (
    index_owners,
    projected,
    rows_of,
    stored_events,
    stream_messages,
)
from tests.integration.test_statistics import run
from tests.waiting import wait_for_value, wait_until

ALICE = Actor("alice")


@pytest.fixture(scope="module")
def module_database(postgres: EmbeddedPostgres) -> str:
    return create_database(postgres.url, "test_retention")


@pytest.fixture(scope="module")
async def stack(module_database: str, module_nats: EmbeddedNats) -> AsyncIterator[Stack]:
    bootstrap.ensure_read_models(module_database)
    async with await psycopg.AsyncConnection.connect(module_database) as connection:
        await webhooks.ensure_tables(connection)
    with_all = tuple(bootstrap.projections().values())
    async with running_stack(module_database, module_nats, projections=with_all) as running:
        UserLog(running.store).ensure_tables()
        yield running


@pytest.fixture(scope="module")
async def bus(module_nats: EmbeddedNats) -> AsyncIterator[Bus]:
    opened = await connect(module_nats.url_for("relay"), "test-retention-relay")
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_dry_run_deletes_nothing_and_a_purge_removes_only_old_finished_tasks(
    stack: Stack, bus: Bus, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = [run(stack.commands, ALICE, outcome) for outcome in ("completed", "failed", "cancelled")]
    running = run(stack.commands, ALICE, "pending")
    stack.commands.start(running, 1, "w")
    await projected(stack)
    index_owners(stack)
    async with await psycopg.AsyncConnection.connect(stack.database_url) as connection:
        target = webhooks.Target("task:example.org:443", None, "https://example.org/hook")
        await webhooks.enqueue(
            connection, [target], message_id="m", owner="alice", task_id=old[0],
            event_type="task.completed", body=b"{}",
        )  # fmt: skip
        await connection.commit()
    assert rows_of(stack, old[0])["agenttasks_task_owners"] == 1
    assert rows_of(stack, old[0])["webhook_deliveries"] == 1
    settings = Settings(home=tmp_path, database_url=stack.database_url)
    statistics = stack.rows("SELECT task_id, status FROM task_statistics ORDER BY task_id")

    assert purge_command.purge(settings, "0s", dry_run=True) == 0
    out = capsys.readouterr().out
    assert out.startswith("would purge 3 task(s), 12 stored event(s), in 1 batch(es)")
    assert [stored_events(stack, task_id) for task_id in old] == [4, 4, 4]
    assert purge_command.purge(settings, "1h", dry_run=False) == 0  # they ended just now
    assert capsys.readouterr().out.startswith("purged 0 task(s)")

    assert purge_command.purge(settings, "0s", dry_run=False) == 0
    assert capsys.readouterr().out.startswith("purged 3 task(s), 12 stored event(s)")
    await projected(stack)
    for task_id in old:
        assert stored_events(stack, task_id) == 0
        with pytest.raises(TaskNotFound):  # what GET /ai-tasks/{id}/events/ answers 404 with
            stack.commands.history(ALICE, task_id)
        assert set(rows_of(stack, task_id).values()) == {0}, rows_of(stack, task_id)
        await wait_for_value(lambda t=task_id: stream_messages(bus, t), lambda n: n == 0, 15)
    assert stored_events(stack, running) == 2  # not finished: kept
    assert rows_of(stack, running)["tasks"] == 1
    # Statistics count purged tasks as before (docs/read-models.md), so totals do not move.
    after = stack.rows("SELECT task_id, status FROM task_statistics ORDER BY task_id")
    assert after == statistics

    assert cli.replay(settings, "all", verify=True) == 0
    out = capsys.readouterr().out
    assert out.count("verified") == len(stack.runners)
    assert "live" not in out  # no difference reported
    assert purge_command.print_deletion(stack.store, old[0])
    assert "by cli (retention): summary, completed" in capsys.readouterr().out


async def test_a_killed_purge_is_finished_by_the_next_one(stack: Stack) -> None:
    task_id = run(stack.commands, ALICE, "completed")
    await projected(stack)
    deleter = Deleter(stack.store)
    candidate = deleter.check(
        task_id, history(stack.store, task_id), actor="maintenance", reason="retention"
    )
    # What a purge killed between its deletion record and its deletes leaves behind.
    stack.rows(
        f"INSERT INTO {TABLE} (task_id, task_type, priority) VALUES ('{task_id}', 'summary',"
        " 'normal') RETURNING task_id"
    )
    stack.store.save(candidate.record)
    assert stored_events(stack, task_id) == 4
    deleter.finish_interrupted()  # a deletion under way (as far as anyone can tell) is left alone
    assert stored_events(stack, task_id) == 4
    stack.rows(f"UPDATE {TABLE} SET started_at = now() - interval '1 hour' RETURNING task_id")

    report = Purger(stack.store, batch=10).purge_finished_before(
        datetime.now(UTC) - timedelta(days=1), dry_run=False, actor="maintenance", limit=10
    )
    assert (report.resumed, report.tasks) == (1, 0)
    assert stored_events(stack, task_id) == 0
    await projected(stack)
    assert set(rows_of(stack, task_id).values()) == {0}


def test_a_bad_duration_is_one_line_and_exit_status_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTTASKS_DATABASE_URL", "postgresql://nowhere/none")
    assert cli.main(["purge", "--older-than", "soon", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("agenttasks: --older-than 'soon': expected a number and a unit")


async def test_the_stream_keeps_messages_for_its_max_age(bus: Bus) -> None:
    settings = Settings.from_env({})
    assert settings.stream_max_age == timedelta(days=7)
    await bus.ensure_stream(1, settings.stream_max_seconds)
    assert (await bus.js.stream_info(STREAM)).config.max_age == 7 * 86400
    await bus.ensure_stream(
        1, Settings.from_env({"AGENTTASKS_STREAM_MAX_AGE": "off"}).stream_max_seconds
    )
    assert not (await bus.js.stream_info(STREAM)).config.max_age


async def test_a_relay_restarting_on_an_emptied_stream_resumes_after_its_heartbeat(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    # What max_age does to an idle stream: every message gone, the sequence kept.
    bootstrap.ensure_read_models(database_url)
    async with running_stack(database_url, nats_server, projections=()) as first:
        task_id = run(first.commands, ALICE, "completed")
        newest = first.store.recorder.max_notification_id()
        beat = "SELECT published_position FROM relay_status"
        await wait_until(lambda: first.rows(beat) == [(newest,)])
    relay_bus = await connect(nats_server.url_for("relay"), "test-emptier")
    try:
        await relay_bus.purge_subject("agenttasks.events.>")
        assert await relay_bus.stream_bounds() == (5, 4)  # empty, last sequence 4
        async with running_stack(database_url, nats_server, projections=()) as second:
            later = run(second.commands, ALICE, "pending")
            await wait_until(lambda: second.relay.published_position > newest)
            first_seq, last_seq = await relay_bus.stream_bounds()
        # Only the new event went out: nothing of the task before the restart was published again.
        assert (first_seq, last_seq) == (5, 5)
        assert await stream_messages(relay_bus, task_id) == 0
        assert await stream_messages(relay_bus, later) == 1
    finally:
        await relay_bus.close()


async def test_a_read_model_behind_the_deletion_catches_up_without_recreating_rows(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    bootstrap.ensure_read_models(database_url)
    everything = bootstrap.projections()
    lagging = everything.pop("statistics")
    async with running_stack(
        database_url, nats_server, projections=tuple(everything.values())
    ) as stack:
        task_id = run(stack.commands, ALICE, "completed")
        await projected(stack)
        Deleter(stack.store).delete(ALICE, task_id)  # statistics has not seen the task at all
        await projected(stack)
        assert stored_events(stack, task_id) == 0
        reader = await connect(nats_server.url_for("reader"), "test-lagging-reader")
        try:
            # Its stream messages wait: the statistics read model has still to read them.
            assert await stream_messages(reader, task_id) == 4
            await stack.start_projector(lagging)
            await stack.projected("statistics")
            rows = stack.rows(f"SELECT status FROM task_statistics WHERE task_id = '{task_id}'")
            assert rows == [("completed",)]  # counted once, from its events then its record
            recreated = stack.rows(f"SELECT count(*) FROM tasks WHERE id = '{task_id}'")
            assert recreated == [(0,)]  # nobody re-created the task's row
            await wait_for_value(lambda: stream_messages(reader, task_id), lambda n: n == 0, 15)
        finally:
            await reader.close()
        settings = Settings(database_url=database_url)
        assert cli.replay(settings, "all", verify=True) == 0
