"""The write side, the relay and the task projector running together on real servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg

from agenttasks import bootstrap
from agenttasks.application.store import EventStore, close, open_event_store
from agenttasks.application.tasks import TaskCommands
from agenttasks.bus.connection import Bus, connect
from agenttasks.projections.base import Projection
from agenttasks.projections.runner import ProjectionRunner
from agenttasks.projections.tasks import task_projection
from agenttasks.relay import Relay
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.settings import Settings
from tests.waiting import wait_until


@dataclass
class Stack:
    """Handles on the running parts, for a test to drive and inspect."""

    database_url: str
    nats: EmbeddedNats
    store: EventStore
    relay: Relay
    commands: TaskCommands  # as the API and the workers build theirs
    runners: dict[str, ProjectionRunner] = field(default_factory=dict)
    _stops: list[tuple[asyncio.Event, asyncio.Task[None], Bus]] = field(default_factory=list)

    async def start_projector(self, projection: Projection) -> ProjectionRunner:
        bus = await connect(self.nats.url_for("projector"), f"test-projector-{projection.name}")
        runner = ProjectionRunner(projection, self.database_url, bus)
        stop = asyncio.Event()
        self._stops.append((stop, asyncio.create_task(runner.run(stop)), bus))
        self.runners[projection.name] = runner
        return runner

    async def stop_projectors(self) -> None:
        for stop, task, bus in self._stops:
            stop.set()
            await task
            await bus.close()
        self._stops.clear()

    async def projected(self, name: str = "tasks") -> None:
        """Waits until projection `name` has applied everything stored so far."""
        newest = self.store.recorder.max_notification_id() or 0
        await wait_until(lambda: self.runners[name].position >= newest)

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url) as connection:
            return connection.execute(query).fetchall()


@asynccontextmanager
async def running_stack(
    database_url: str,
    nats: EmbeddedNats,
    *,
    projections: tuple[Projection, ...] | None = None,
    settings: Settings | None = None,
) -> AsyncIterator[Stack]:
    settings = settings or Settings(database_url=database_url)
    store = open_event_store(settings.eventsourcing_env())
    relay_bus = await connect(nats.url_for("relay"), "test-relay")
    relay = bootstrap.relay(store, database_url, relay_bus)
    stop_relay = asyncio.Event()
    relay_task = asyncio.create_task(relay.run(stop_relay))
    stack = Stack(database_url, nats, store, relay, bootstrap.task_commands(store))
    try:
        for projection in projections if projections is not None else (task_projection(),):
            await stack.start_projector(projection)
        yield stack
    finally:
        await stack.stop_projectors()
        stop_relay.set()
        await relay_task
        await relay_bus.close()
        close(store)
