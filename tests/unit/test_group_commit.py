"""Group commit: concurrent commands share transactions, and a race on one task stays correct."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agenttasks.application.group_commit import GroupCommitter
from agenttasks.application.store import EventStore, open_event_store, read_log
from agenttasks.application.tasks import SYSTEM, Actor, NewTask, TaskCommands
from agenttasks.bootstrap import task_commands
from tests.waiting import block_until

ALICE = Actor("alice")


def summary(title: str) -> NewTask:
    return NewTask(title=title, task_type="summary", task_config={"content": "Some text."})


class GatedStore(EventStore):
    """An in-memory store whose first append waits for a gate, so requests pile up behind it."""

    def __init__(self) -> None:
        super().__init__(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
        self.gate = threading.Event()
        self.saves = 0

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        self.saves += 1
        if self.saves == 1:
            assert self.gate.wait(10)
        return super().save(*objs, **kwargs)


def test_creates_queued_behind_a_slow_append_share_the_next_transaction() -> None:
    store = GatedStore()
    committer = GroupCommitter(store)
    commands = TaskCommands(store, committer)

    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(commands.create, ALICE, summary(f"t{i}")) for i in range(16)]
        block_until(lambda: committer.queued >= 15, 10, explain=lambda: committer.queued)
        store.gate.set()
        positions = [f.result().position for f in futures]

    assert sorted(p for p in positions if p) == [e.position for e in read_log(store)]
    assert len(set(positions)) == 16
    assert committer.transactions == 2, "the first create alone, then the fifteen queued together"


def test_concurrent_creates_are_all_stored_once() -> None:
    store = open_event_store()
    commands = task_commands(store)
    barrier = threading.Barrier(16)

    def create_many(worker: int) -> list[int]:
        barrier.wait()
        return [commands.create(ALICE, summary(f"{worker}-{i}")).position or 0 for i in range(50)]

    with ThreadPoolExecutor(16) as pool:
        positions = [p for batch in pool.map(create_many, range(16)) for p in batch]

    assert sorted(positions) == [e.position for e in read_log(store)]
    assert len(set(positions)) == 800


def test_commands_racing_on_one_task_are_each_decided_by_the_rules() -> None:
    store = open_event_store()
    commands = task_commands(store)
    task_id = commands.create(ALICE, summary("race")).task_id
    commands.start(task_id, 1, "w1")
    barrier = threading.Barrier(8)

    def report(progress: int) -> None:
        barrier.wait()
        commands.report_progress(task_id, 1, progress, f"at {progress}")

    with ThreadPoolExecutor(8) as pool:
        outcomes = [pool.submit(report, p) for p in (10, 20, 30, 40, 50, 60, 70, 80)]
    failures = [f.exception() for f in outcomes if f.exception() is not None]

    task = commands.get(SYSTEM, task_id)
    accepted = len(outcomes) - len(failures)
    assert task.version == 2 + accepted  # created, started, then one event per accepted report
    assert all("cannot go down" in str(error) for error in failures)
    assert task.progress == 80


def test_a_cancel_racing_progress_reports_ends_cancelled_with_nothing_after_it() -> None:
    store = open_event_store()
    commands = task_commands(store)
    task_id = commands.create(ALICE, summary("cancel race")).task_id
    commands.start(task_id, 1, "w1")
    barrier = threading.Barrier(5)

    def progress(value: int) -> None:
        barrier.wait()
        commands.report_progress(task_id, 1, value, "working")

    def cancel() -> None:
        barrier.wait()
        commands.cancel(ALICE, task_id)

    with ThreadPoolExecutor(5) as pool:
        futures = [pool.submit(progress, v) for v in (10, 20, 30, 40)] + [pool.submit(cancel)]
    assert futures[-1].exception() is None, "a cancel of a running task always wins eventually"

    kinds = [type(e.event).__name__ for e in read_log(store)]
    assert kinds[-1] == "Cancelled" or kinds.index("Cancelled") == len(kinds) - 1
    assert commands.get(SYSTEM, task_id).status == "cancelled"
