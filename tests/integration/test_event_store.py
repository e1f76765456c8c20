"""The same task scenario against the in-memory store and Postgres: only the settings differ."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from agenttasks.application.store import EventStore, close, history, open_event_store, read_log
from agenttasks.application.tasks import Actor, NewTask
from agenttasks.bootstrap import task_commands
from agenttasks.domain.rules import RuleViolation
from agenttasks.settings import Settings

ALICE = Actor("alice")


@pytest.fixture(params=["memory", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[EventStore]:
    if request.param == "memory":
        store = open_event_store()
    else:
        database_url = request.getfixturevalue("database_url")
        store = open_event_store(Settings(database_url=database_url).eventsourcing_env())
    yield store
    close(store)


def test_a_task_lives_its_whole_life_the_same_on_either_store(store: EventStore) -> None:
    commands = task_commands(store)
    task_id = commands.create(ALICE, NewTask("t", "summary", {"content": "x"})).task_id
    commands.start(task_id, 1, "w1")
    commands.fail(task_id, 1, "http_503", "busy", retryable=True)
    commands.retry_automatically(task_id, "transient")
    commands.start(task_id, 2, "w2")
    with pytest.raises(RuleViolation):
        commands.report_progress(task_id, 1, 50, "late news from the lost worker")
    last = commands.complete(task_id, 2, {"summary": "s"})

    task = commands.get(ALICE, task_id)
    assert (task.status, task.attempt, task.result_data) == ("completed", 2, {"summary": "s"})
    events = history(store, task_id)
    assert [type(e.event).__name__ for e in events] == [
        "Created",
        "Started",
        "Failed",
        "Retried",
        "Started",
        "Completed",
    ]
    assert events[-1].position == last.position
    assert [e.position for e in events] == sorted(e.position for e in events)


def test_concurrent_writers_leave_a_log_without_holes_in_commit_order(store: EventStore) -> None:
    commands = task_commands(store)

    def write(n: int) -> None:
        for i in range(20):
            commands.create(ALICE, NewTask(f"{n}-{i}", "summary", {"content": "x"}))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    positions = [e.position for e in read_log(store)]
    assert len(positions) == 160
    assert positions == sorted(positions)


def test_processes_opening_a_new_store_at_once_do_not_collide_on_its_tables(
    database_url: str,
) -> None:
    # API replicas and `up`'s children construct the store together on a fresh database; the
    # library's CREATE ... IF NOT EXISTS statements alone fail with "tuple concurrently updated".
    env = Settings(database_url=database_url).eventsourcing_env()
    opened: list[EventStore] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def open_one() -> None:
        start.wait()
        try:
            opened.append(open_event_store(env))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in opened:
        close(store)
    assert errors == []
    assert len(opened) == 8
