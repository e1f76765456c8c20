"""What the API needs from the rest of the system, built complete by the composition root."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar
from uuid import UUID

from litestar.di import NamedDependency
from litestar.params import FromPath

from agenttasks.application.budgets import Budgets
from agenttasks.application.loop_commit import LoopCommitter
from agenttasks.application.quotas import Quotas
from agenttasks.application.tasks import Actor, TaskCommands
from agenttasks.application.templates import TemplateCommands
from agenttasks.application.user_limits import LimitsLookup, UserLimitsCommands
from agenttasks.bus.connection import Bus
from agenttasks.live.service import LiveUpdates
from agenttasks.metrics.system import ApiMetrics
from agenttasks.offload import StoreThreads
from agenttasks.projections.positions import ProjectionWatcher
from agenttasks.projections.statistics_queries import StatisticsQueries
from agenttasks.projections.task_queries import TaskQueries
from agenttasks.projections.template_queries import TemplateQueries
from agenttasks.projections.worker_queries import WorkerQueries
from agenttasks.webhooks.service import WebhookService

T = TypeVar("T")
ReadyCheck = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class ApiConfig:
    """What the app needs before it starts: the auth secret, other origins, extra routes."""

    jwt_secret: str
    cors_origins: frozenset[str] = frozenset()  # pages besides ours that may use the cookie
    extra_route_handlers: tuple[Any, ...] = ()
    cors_allow_credentials: bool = False  # CORS answers let the cookie through (never with *)
    plugins: tuple[Any, ...] = ()  # e.g. OpenTelemetry's, when OTEL_EXPORTER_OTLP_ENDPOINT is set
    token_cache_size: int = 1024  # AGENTTASKS_TOKEN_CACHE_SIZE: verified tokens kept (api/auth.py)


@dataclass
class ApiDeps:
    """The API's collaborators, all open: commands (sync, run in threads), queries, streams."""

    commands: TaskCommands
    templates: TemplateCommands
    queries: TaskQueries
    template_queries: TemplateQueries
    statistics: StatisticsQueries
    workers: WorkerQueries  # the Workers view (admins): heartbeats, backlog, oldest pending
    watcher: ProjectionWatcher
    bus: Bus  # NATS as the `api` user, for live streams
    live: LiveUpdates  # the streams' feeds (one hub per process)
    webhooks: WebhookService  # registered endpoints (plain tables: docs/webhooks.md)
    quotas: Quotas  # per-user limits, counted in Postgres (api/limits.py)
    user_limits: UserLimitsCommands
    limits: LimitsLookup  # each user's limits, kept briefly
    budgets: Budgets  # users' budgets and spending (api/budgets.py)
    ready_checks: Mapping[str, ReadyCheck]
    # eventsourcing is synchronous: commands run here, and enough threads at once let the
    # group committer put many of them in one transaction.
    executor: StoreThreads
    keepalive_seconds: float
    read_your_writes_timeout: float = 5.0
    metrics: ApiMetrics | None = None  # GET /metrics: the system-wide collector, the token
    workers_list_max: int = 200  # AGENTTASKS_WORKERS_LIST_MAX
    # Creates saved on the event loop (application/loop_commit.py); None: through `executor`.
    creates: LoopCommitter | None = None

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """Runs a synchronous command off the event loop, with the request's context variables."""
        return await self.executor.call(function, *args)


# Handler parameter types: explicit markers, as Litestar 3 requires.
Deps: TypeAlias = NamedDependency[ApiDeps]
CurrentActor: TypeAlias = NamedDependency[Actor]
TaskId: TypeAlias = FromPath[UUID]
