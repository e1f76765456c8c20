"""A worker starts attempt 1 from its created message: the copy must be the stored task exactly,
and it is used only while the store holds that Created event and nothing after it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import msgspec
import pytest

from agenttasks.application.bus_payloads import mapper_for
from agenttasks.application.store import EventStore, close, history, open_event_store
from agenttasks.application.tasks import SYSTEM, Actor, NewTask, TaskCommands, TaskNotFound
from agenttasks.bootstrap import task_commands
from agenttasks.bus.consumers import Delivery
from agenttasks.bus.messages import encode
from agenttasks.domain.rules import RuleViolation
from agenttasks.domain.task import Task
from agenttasks.servers.postgres import create_database
from agenttasks.settings import Settings
from agenttasks.workers.intake import NotAJob, job_from, task_from_created

ALICE = Actor("alice")


@pytest.fixture(scope="module")
def store(postgres: Any) -> Iterator[EventStore]:
    url = create_database(postgres.url, "test_start_from_message", exist_ok=True)
    store = open_event_store(Settings(database_url=url).eventsourcing_env())
    yield store
    close(store)


def created_message(store: EventStore, task_id: Any) -> tuple[bytes, int]:
    """The bytes the relay publishes for the task's Created event, and its position."""
    first = history(store, task_id)[0]
    payload = mapper_for(store).map(first.event, first.position)
    assert payload is not None
    return encode(payload), first.position


def offered(data: bytes) -> Task | None:
    """What the worker starts from: the message taken as a job, then the job's copy."""
    return task_from_created(job_from(Delivery(data, 1, None)))


def state(task: Task) -> dict[str, Any]:
    return {k: v for k, v in vars(task).items() if k != "_pending_events"}


@pytest.mark.parametrize(
    "new",
    [
        NewTask("plain", "summary", {"content": "x"}),
        NewTask(
            "all fields, ünïcode ✓",
            "data_analysis",
            {"data": {"x": [1, 2.5, -3e-7, 10**18]}},
            priority="urgent",
            template_id=uuid4(),
            template_version=4,
            max_retries=0,
            timeout_seconds=86_400,
            webhook_url="https://example.com/hook?a=1",
        ),
    ],
)
def test_the_copy_from_the_message_is_the_stored_task_exactly(
    store: EventStore, new: NewTask
) -> None:
    commands = task_commands(store)
    task_id = commands.create(ALICE, new).task_id
    data, _ = created_message(store, task_id)
    copy = offered(data)
    assert copy is not None
    assert state(copy) == state(commands.get(SYSTEM, task_id))


def test_a_payload_that_is_not_an_exact_created_gives_no_copy(store: EventStore) -> None:
    commands = task_commands(store)
    task_id = commands.create(ALICE, NewTask("t", "summary", {"content": "x"})).task_id
    data, _ = created_message(store, task_id)
    message = msgspec.json.decode(data)
    newer = {**message, "data": {**message["data"], "a_field_of_v4": 1}}
    assert offered(msgspec.json.encode(newer)) is None  # a field it does not know
    cleaned = {**message, "data": {**message["data"], "title": "was \ufffd NUL"}}
    assert offered(msgspec.json.encode(cleaned)) is None  # NUL replaced on the way
    assert offered(msgspec.json.encode({**message, "version": 2})) is None
    with pytest.raises(NotAJob):
        offered(msgspec.json.encode({**message, "type": "started"}))


def start_from_message(commands: TaskCommands, task_id: Any) -> Any:
    data, position = created_message(commands.store, task_id)
    copy = offered(data)
    assert copy is not None
    return copy, position


def test_a_fresh_copy_starts_the_task(store: EventStore) -> None:
    commands = task_commands(store)
    task_id = commands.create(ALICE, NewTask("t", "summary", {"content": "x"})).task_id
    copy, position = start_from_message(commands, task_id)
    started = commands.start_offered(copy, position, "w1")
    assert started.task is not None
    assert started.task.status == "running"
    assert [type(e.event).__name__ for e in history(store, task_id)] == ["Created", "Started"]


def test_a_copy_of_a_task_changed_since_is_refused_by_the_stored_state(
    store: EventStore,
) -> None:
    commands = task_commands(store)
    task_id = commands.create(ALICE, NewTask("t", "summary", {"content": "x"})).task_id
    copy, position = start_from_message(commands, task_id)
    commands.cancel(ALICE, task_id)
    with pytest.raises(RuleViolation):
        commands.start_offered(copy, position, "w1")
    assert [type(e.event).__name__ for e in history(store, task_id)] == ["Created", "Cancelled"]


def delete_events(store: EventStore, task_id: Any) -> None:
    """What a deletion does to the store (deletion.py step 3), for the one task."""
    recorder: Any = store.recorder
    with recorder.datastore.transaction(commit=True) as cursor:
        cursor.execute(
            f"DELETE FROM {recorder.events_table_name} WHERE originator_id = %s",
            (task_id,),
        )


def test_a_copy_of_a_deleted_task_writes_nothing(store: EventStore) -> None:
    # A message held (in a backlog) while its task was cancelled and deleted: its version 2
    # would no longer clash with anything, so only the check keeps a Started out of the store.
    commands = task_commands(store)
    task_id = commands.create(ALICE, NewTask("t", "summary", {"content": "x"})).task_id
    copy, position = start_from_message(commands, task_id)
    commands.cancel(ALICE, task_id)
    delete_events(store, task_id)
    with pytest.raises(TaskNotFound):
        commands.start_offered(copy, position, "w1")
    assert history(store, task_id) == []


def test_a_copy_of_a_deleted_and_recreated_task_runs_the_new_one(store: EventStore) -> None:
    # Same Idempotency-Key, same task id: the old message's copy must not stand in for it.
    commands = task_commands(store)
    key = f"k-{uuid4()}"
    task_id = commands.create(ALICE, NewTask("old", "summary", {"content": "x"}), key).task_id
    copy, position = start_from_message(commands, task_id)
    commands.cancel(ALICE, task_id)
    delete_events(store, task_id)
    again = commands.create(ALICE, NewTask("new", "summary", {"content": "y"}), key)
    assert again.task_id == task_id
    started = commands.start_offered(copy, position, "w1")
    assert started.task is not None
    assert started.task.title == "new"


def test_the_copy_knows_every_field_of_created() -> None:
    # A field Created gains makes every copy refused (safe, but every start loads again).
    from dataclasses import fields

    from agenttasks.workers.intake import _CreatedFields

    envelope = {"originator_id", "originator_version", "timestamp", "originator_topic"}
    created = {f.name for f in fields(Task.Created)} - envelope
    assert set(_CreatedFields.__struct_fields__) == created
