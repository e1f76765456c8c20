"""The store's own append (OrderedAppendRecorder): ids commit in order, clashes stay IntegrityError.

The append replaces the library's pipelined insert (docs/performance.md); what must not change
is that a reader tailing the notification log while many threads append never passes over an
id that commits later (NOTES: without the table lock a live reader missed 43-68 of 12,000).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError

from agenttasks.application.store import (
    EventStore,
    OrderedAppendRecorder,
    close,
    open_event_store,
)
from agenttasks.application.tasks import Actor, NewTask
from agenttasks.bootstrap import task_commands
from agenttasks.settings import Settings

WRITERS = 8
SAVES_EACH = 60


@pytest.fixture
def store(database_url: str) -> Iterator[EventStore]:
    store = open_event_store(Settings(database_url=database_url).eventsourcing_env())
    yield store
    close(store)


def test_the_store_appends_with_its_own_recorder(store: EventStore) -> None:
    assert isinstance(store.recorder, OrderedAppendRecorder)


def test_a_tailing_reader_never_passes_over_an_id_that_commits_later(store: EventStore) -> None:
    writing = threading.Barrier(WRITERS + 1)
    done = threading.Event()
    tailed: list[int] = []

    def write() -> None:
        # Each writer saves alone (no group committer), so the appends race one another.
        commands = task_commands(store)
        writing.wait()
        for index in range(SAVES_EACH):
            task = commands.build(Actor("w"), NewTask(f"t{index}", "summary", {"content": "x"}))
            store.save(task)

    def tail() -> None:
        after = 0
        writing.wait()
        while True:
            finished = done.is_set()  # read before the page: a last page after the writers
            page = store.recorder.select_notifications(after, 500, inclusive_of_start=False)
            tailed.extend(n.id for n in page)
            if page:
                after = page[-1].id
            elif finished:
                return

    threads = [threading.Thread(target=write) for _ in range(WRITERS)]
    reader = threading.Thread(target=tail)
    for thread in [*threads, reader]:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    reader.join()

    stored = [n.id for n in store.recorder.select_notifications(0, 100_000)]
    assert len(stored) == WRITERS * SAVES_EACH
    assert tailed == stored  # nothing skipped, nothing twice, in order


def test_a_version_clash_is_the_librarys_integrity_error_and_stores_nothing(
    store: EventStore,
) -> None:
    commands = task_commands(store)
    task_id = commands.create(Actor("a"), NewTask("t", "summary", {"content": "x"})).task_id
    first, second = store.repository.get(task_id), store.repository.get(task_id)
    first.start(1, "w1")
    second.start(1, "w2")
    before = store.recorder.max_notification_id()
    store.save(first)
    with pytest.raises(IntegrityError):
        store.save(second)
    assert store.recorder.max_notification_id() == (before or 0) + 1
    # The connection that saw the clash is usable again: the next append goes through.
    commands.report_progress(task_id, 1, 10, "still here")


def test_events_of_an_aggregate_whose_history_was_deleted_are_refused_and_store_nothing(
    store: EventStore, database_url: str
) -> None:
    # A zombie attempt still holds a task in memory when the finished task is deleted: its
    # next save must not start a history with no Created (deletion.py deletes stored events).
    commands = task_commands(store)
    kept = commands.create(Actor("a"), NewTask("kept", "summary", {"content": "x"})).task_id
    gone = commands.create(Actor("a"), NewTask("gone", "summary", {"content": "x"})).task_id
    zombie, other_zombie = store.repository.get(gone), store.repository.get(gone)
    alive = store.repository.get(kept)
    zombie.start(1, "w1")
    other_zombie.start(1, "w1")
    alive.start(1, "w2")
    table = store.recorder.events_table_name  # type: ignore[attr-defined]
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(f"DELETE FROM {table} WHERE originator_id = %s", (gone,))
    before = store.recorder.max_notification_id()
    with pytest.raises(IntegrityError, match="does not continue"):
        store.save(zombie)
    # Saved together with a good one, the whole batch is refused (the group committer then
    # retries each command alone), and nothing of either is stored.
    with pytest.raises(IntegrityError):
        store.save(alive, other_zombie)
    assert store.recorder.max_notification_id() == before
    assert store.recorder.select_events(gone) == []
    again = store.repository.get(kept)
    again.start(1, "w2")
    store.save(again)  # alone, the continuing history goes in
    assert [e.originator_version for e in store.recorder.select_events(kept)] == [1, 2]
