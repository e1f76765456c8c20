"""Exactly one start per task when two worker processes start it from the loop at once
(workers/loop_start.py, each with its own session): the append under the table lock lets one
through, the other stores nothing and its ordinary start is refused by the stored task."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from agenttasks.application.bus_payloads import mapper_for
from agenttasks.application.store import EventStore, close, history, open_event_store
from agenttasks.application.tasks import Written
from agenttasks.bootstrap import task_commands
from agenttasks.bus.consumers import Delivery
from agenttasks.bus.messages import encode
from agenttasks.domain.task import Task
from agenttasks.servers.postgres import create_database
from agenttasks.settings import Settings
from agenttasks.workers.intake import job_from, task_from_created
from agenttasks.workers.loop_start import LoopStarts
from tests.integration.test_loop_start import create, kinds


@pytest.fixture(scope="module")
def database(postgres: Any) -> str:
    return create_database(postgres.url, "test_start_once", exist_ok=True)


@pytest.fixture(scope="module")
def store(database: str) -> Iterator[EventStore]:
    store = open_event_store(Settings(database_url=database).eventsourcing_env())
    yield store
    close(store)


def another_copy(store: EventStore, task: Task) -> Task:
    """The copy a second worker builds from the same Created message (a redelivery)."""
    first = history(store, task.id)[0]
    payload = mapper_for(store).map(first.event, first.position)
    assert payload is not None
    copy = task_from_created(job_from(Delivery(encode(payload), 2, None)))
    assert copy is not None
    return copy


async def test_two_workers_starting_one_task_at_once_start_it_once(
    store: EventStore, database: str
) -> None:
    first, second = LoopStarts(store, database), LoopStarts(store, database)
    try:
        tasks = [create(store, f"raced-{n}") for n in range(5)]
        outcomes = await asyncio.gather(
            *(first.start(copy, at, "w1") for copy, at in tasks),
            *(second.start(another_copy(store, copy), at, "w2") for copy, at in tasks),
        )
        for n, (copy, at) in enumerate(tasks):
            mine, theirs = outcomes[n], outcomes[n + len(tasks)]
            assert [isinstance(o, Written) for o in (mine, theirs)].count(True) == 1, (mine, theirs)
            assert None in (mine, theirs), "the loser stores nothing and says so"
            assert kinds(store, copy.id) == ["Created", "Started"]
            # The loser's caller starts it the ordinary way: the stored task refuses.
            with pytest.raises(Exception, match="cannot start a running task"):
                await asyncio.to_thread(task_commands(store).start, copy.id, 1, "w2")
            # A later redelivery's copy is stale: nothing stored by either path.
            assert await first.start(another_copy(store, copy), at, "w3") is None
            assert kinds(store, copy.id) == ["Created", "Started"]
    finally:
        await first.close()
        await second.close()
