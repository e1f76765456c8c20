"""Deletion and purge guards on a real Postgres: nobody deletes another user's task, and a
purge keeps to its batch cap (AGENTTASKS_PURGE_BATCH) and its limit.

No NATS: the tasks read model is built from the store by a replay, as the projector would.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from agenttasks import bootstrap
from agenttasks.application.bus_payloads import mapper_for
from agenttasks.application.store import EventStore, close, open_event_store
from agenttasks.application.tasks import Actor, NewTask, TaskCommands, TaskNotFound
from agenttasks.deletion import RECORD_TOPIC, Deleter
from agenttasks.projections.replay import replay
from agenttasks.projections.tasks import task_projection
from agenttasks.retention import Purger
from agenttasks.settings import Settings, SettingsError

ALICE, BOB = Actor("alice"), Actor("bob")


@pytest.fixture
def store(database_url: str) -> Iterator[EventStore]:
    bootstrap.ensure_read_models(database_url)
    opened = open_event_store(Settings(database_url=database_url).eventsourcing_env())
    try:
        yield opened
    finally:
        close(opened)


def finished(commands: TaskCommands, actor: Actor, count: int) -> list[UUID]:
    ids = []
    for _ in range(count):
        task_id = commands.create(actor, NewTask("t", "summary", {"content": "x"})).task_id
        commands.cancel(actor, task_id)
        ids.append(task_id)
    return ids


def stored(store: EventStore, database_url: str, task_id: UUID) -> int:
    with store.recorder.datastore.transaction(commit=False) as cursor:  # type: ignore[attr-defined]
        cursor.execute(
            f"SELECT count(*) AS n FROM {store.recorder.events_table_name}"  # type: ignore[attr-defined]
            " WHERE originator_id = %s",
            (task_id,),
        )
        return int(cursor.fetchone()["n"])


def test_a_user_cannot_delete_another_users_task(store: EventStore, database_url: str) -> None:
    commands = bootstrap.task_commands(store)
    (task_id,) = finished(commands, ALICE, 1)
    replay(task_projection(), store, mapper_for(store), database_url)
    deleter = Deleter(store)

    with pytest.raises(TaskNotFound):  # 404, as for a task that does not exist
        deleter.delete(BOB, task_id)
    assert stored(store, database_url, task_id) == 2
    assert deleter.delete(ALICE, task_id).events == 2
    assert stored(store, database_url, task_id) == 0


def test_a_purge_writes_at_most_a_batch_per_transaction_and_stops_at_its_limit(
    store: EventStore, database_url: str
) -> None:
    commands = bootstrap.task_commands(store)
    ids = finished(commands, ALICE, 5)
    replay(task_projection(), store, mapper_for(store), database_url)
    later = datetime.now(UTC) + timedelta(seconds=1)

    report = Purger(store, batch=2).purge_finished_before(
        later, dry_run=False, actor="test", limit=3
    )
    assert (report.tasks, report.batches, report.remaining) == (3, 2, True)
    assert sum(stored(store, database_url, task_id) for task_id in ids) == 2 * 2
    with store.recorder.datastore.transaction(commit=False) as cursor:  # type: ignore[attr-defined]
        cursor.execute(  # one save() is one transaction: records sharing an xmin
            f"SELECT count(*) AS n FROM {store.recorder.events_table_name}"  # type: ignore[attr-defined]
            " WHERE topic = %s GROUP BY xmin::text",
            (RECORD_TOPIC,),
        )
        assert sorted(row["n"] for row in cursor.fetchall()) == [1, 2]


@pytest.mark.parametrize("value", ["0", "1001", "lots"])
def test_the_purge_batch_setting_is_bounded(value: str) -> None:
    with pytest.raises(SettingsError, match="AGENTTASKS_PURGE_BATCH"):
        Settings.from_env({"AGENTTASKS_PURGE_BATCH": value})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AGENTTASKS_RETENTION", "forever"),
        ("AGENTTASKS_STREAM_MAX_AGE", "10m"),  # under an hour: consumers would lose messages
        ("AGENTTASKS_STREAM_MAX_AGE", "99999d"),
    ],
)
def test_retention_and_stream_age_are_bounded(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})
