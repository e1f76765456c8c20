"""What the API needs from the rest of the system, built by the composition root."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar
from uuid import UUID

from litestar.di import NamedDependency
from litestar.params import FromPath

from agenttasks.application.tasks import Actor, TaskCommands
from agenttasks.application.templates import TemplateCommands
from agenttasks.bus.connection import Bus
from agenttasks.live.service import LiveUpdates
from agenttasks.projections.positions import ProjectionWatcher
from agenttasks.projections.statistics_queries import StatisticsQueries
from agenttasks.projections.task_queries import TaskQueries
from agenttasks.projections.template_queries import TemplateQueries

T = TypeVar("T")
ReadyCheck = Callable[[], Awaitable[dict[str, Any]]]


@dataclass
class ApiDeps:
    """The API's collaborators: commands (sync, run in threads), queries, the watcher."""

    commands: TaskCommands
    queries: TaskQueries
    watcher: ProjectionWatcher
    jwt_secret: str
    cors_origins: frozenset[str] = frozenset()  # pages besides ours that may use the cookie
    ready_checks: Mapping[str, ReadyCheck] = field(default_factory=dict)
    read_your_writes_timeout: float = 5.0
    bus: Bus | None = None  # NATS as the `api` user, for live streams
    live: LiveUpdates | None = None  # the streams' feeds (one hub per process)
    keepalive_seconds: float = 15.0
    # eventsourcing is synchronous: commands run here, and enough threads at once let the
    # group committer put many of them in one transaction.
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(32, thread_name_prefix="command")
    )
    extra_route_handlers: list[Any] = field(default_factory=list)
    templates: TemplateCommands | None = None
    template_queries: TemplateQueries | None = None
    statistics: StatisticsQueries | None = None
    on_startup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_shutdown: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """Runs a synchronous command off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: function(*args))


# Handler parameter types: explicit markers, as Litestar 3 requires.
Deps: TypeAlias = NamedDependency[ApiDeps]
CurrentActor: TypeAlias = NamedDependency[Actor]
TaskId: TypeAlias = FromPath[UUID]
