"""The composition root: builds every collaborator from Settings and hands it to its user.

Only builders live here; the process roles that run them are in roles.py, the commands'
output in cli.py. The test harnesses build through the same functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

from agenttasks import runtime_file
from agenttasks.servers.secrets import load_secrets
from agenttasks.settings import Settings, SettingsError

# Each role imports only what it builds: the builders below import their parts when called,
# so the relay does not load Litestar and the worker's openai, nor the API the agents
# (~1 s of imports and ~40 MB per process; docs/performance.md). The names are typed here.
if TYPE_CHECKING:
    from litestar import Litestar
    from psycopg_pool import AsyncConnectionPool

    from agenttasks.api.deps import ApiConfig, ApiDeps
    from agenttasks.application.budgets import Budgets
    from agenttasks.application.schema_document import SchemaLimits
    from agenttasks.application.store import EventStore
    from agenttasks.application.tasks import TaskCommands
    from agenttasks.application.templates import TemplateCommands
    from agenttasks.application.user_limits import UserLimitsCommands
    from agenttasks.application.webhooks import WebhookLimits
    from agenttasks.bus.connection import Bus
    from agenttasks.live.service import LiveUpdates
    from agenttasks.maintenance.jobs import RetentionPurge
    from agenttasks.maintenance.leader import Maintenance
    from agenttasks.maintenance.scheduler import Job
    from agenttasks.metrics.system import ApiMetrics
    from agenttasks.projections.base import Projection
    from agenttasks.projections.projector import Projector
    from agenttasks.projections.selfcheck import SelfCheck
    from agenttasks.relay import Relay
    from agenttasks.retention import Purger
    from agenttasks.webhooks.deliverer import Deliverer
    from agenttasks.webhooks.sender import Sender
    from agenttasks.workers.agents import Agent
    from agenttasks.workers.call_budget import CallBudget
    from agenttasks.workers.fetch import Fetcher
    from agenttasks.workers.limits import Limits
    from agenttasks.workers.llm import LanguageModel
    from agenttasks.workers.runtime import Worker, WorkerOptions
    from agenttasks.workers.watchdog import Watchdog

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15.0  # an idle live stream's comment frame, so proxies keep it open


# Settings ----------------------------------------------------------------------------------


def resolve(settings: Settings) -> Settings:
    """Fills in what a running `agenttasks up` on the same data directory knows."""
    runtime = runtime_file.read(settings.home)
    if runtime is not None:
        settings = settings.with_(
            database_url=settings.database_url or runtime.database_url,
            nats_url=settings.nats_url or runtime.nats_url,
            nats_role_urls={**runtime.nats_role_urls, **settings.nats_role_urls},
        )
    if settings.jwt_secret is None and (secrets := load_secrets(settings.home)) is not None:
        settings = settings.with_(jwt_secret=secrets.jwt_secret)
    return settings


def require_database(settings: Settings) -> str:
    """The database URL, or a message saying how to provide one."""
    return _required(settings, settings.database_url, "database", "DATABASE_URL")


def require_secret(settings: Settings) -> str:
    """The JWT secret, or a message saying how to provide one."""
    return _required(settings, settings.jwt_secret, "JWT secret", "JWT_SECRET")


def _required(settings: Settings, value: str | None, what: str, variable: str) -> str:
    if value is None:
        raise SettingsError(
            f"no {what}: set AGENTTASKS_{variable}, or run `agenttasks up` with the data "
            f"directory {settings.home} first"
        )
    return value


def token(settings: Settings, user: str, *, admin: bool, ttl: int) -> str:
    """A JWT signed with the service's secret."""
    from agenttasks.api.auth import mint_token

    secret = require_secret(resolve(settings))
    try:
        return mint_token(secret, user, admin=admin, ttl=ttl)
    except ValueError as error:
        raise SettingsError(str(error)) from None


def schema_limits(settings: Settings) -> SchemaLimits:
    """The caps on template JSON Schemas, from the `schema_*` settings."""
    from agenttasks.application.schema_document import SchemaLimits

    return settings.caps(SchemaLimits, "schema_")


# The write side ----------------------------------------------------------------------------


@contextmanager
def event_store(settings: Settings) -> Iterator[EventStore]:
    """The event store on the configured Postgres, closed afterwards."""
    from agenttasks.application.store import close, open_event_store

    store = open_event_store(settings.eventsourcing_env())
    try:
        yield store
    finally:
        close(store)


def task_commands(store: EventStore) -> TaskCommands:
    """Task commands whose concurrent saves share transactions (one group committer)."""
    from agenttasks.application.group_commit import GroupCommitter
    from agenttasks.application.tasks import TaskCommands

    return TaskCommands(store, GroupCommitter(store))


def template_commands(
    store: EventStore, commands: TaskCommands, settings: Settings
) -> TemplateCommands:
    """Template commands with the settings' caps on config schemas."""
    from agenttasks.application.templates import TemplateCommands

    return TemplateCommands(store, commands, schema_limits(settings))


def relay(
    store: EventStore,
    database_url: str,
    bus: Bus,
    *,
    stream_replicas: int = 1,
    stream_max_age: float | None = None,
) -> Relay:
    """The relay from the store's log to JetStream (the stream kept with `stream_replicas`)."""
    from agenttasks.application.bus_payloads import mapper_for
    from agenttasks.deletion import StreamPurge
    from agenttasks.relay import Relay

    return Relay(
        store,
        database_url,
        bus,
        mapper_for(store),
        stream_replicas=stream_replicas,
        stream_max_age=stream_max_age,
        stream_purge=StreamPurge(list(projections())),
    )


@contextmanager
def build_purger(settings: Settings) -> Iterator[Purger]:
    """The retention purger on the configured store (batches of AGENTTASKS_PURGE_BATCH)."""
    from agenttasks.retention import Purger

    settings = resolve(settings)
    database_url = require_database(settings)
    ensure_read_models(database_url)  # the tasks table it selects from, and its own
    with event_store(settings) as store:
        yield Purger(store, settings.purge_batch)


# The read side -----------------------------------------------------------------------------


def projections() -> dict[str, Projection]:
    """Every read model, by name."""
    from agenttasks.projections.metrics import metrics_projection
    from agenttasks.projections.statistics import statistics_projection
    from agenttasks.projections.tasks import task_projection
    from agenttasks.projections.template_usage import template_usage_projection
    from agenttasks.projections.templates import template_projection

    return {
        "tasks": task_projection(),
        "templates": template_projection(),
        "template_usage": template_usage_projection(),
        "statistics": statistics_projection(),
        "metrics": metrics_projection(),
    }


def chosen_projections(names: list[str]) -> list[Projection]:
    """The named read models (none named: all), or a message listing the known ones."""
    available = projections()
    unknown = [name for name in names if name not in available]
    if unknown:
        raise SettingsError(f"unknown read model(s) {unknown}; known: {', '.join(available)}")
    return [available[name] for name in names or available]


def projector(
    settings: Settings, store: EventStore, bus: Bus, chosen: list[Projection]
) -> tuple[Projector, SelfCheck]:
    """One in-order reader feeding every chosen read model, and their self-check."""
    from agenttasks.projections.projector import Projector
    from agenttasks.projections.runner import ProjectionRunner
    from agenttasks.projections.selfcheck import SelfCheck

    database_url = require_database(settings)
    runners = [ProjectionRunner(p, database_url, bus) for p in chosen]
    check = SelfCheck(
        runners,
        bus,
        database_url,
        store.recorder.events_table_name,  # type: ignore[attr-defined]
        every=settings.projection_check_seconds,
        count_every=settings.projection_count_seconds,
    )
    return Projector(runners, bus), check


def ensure_read_models(database_url: str) -> None:
    """Creates the tracking table and every read model's tables if they do not exist yet."""
    import psycopg

    from agenttasks import deletion, quarantine, relay_status
    from agenttasks.application.quotas import ensure_quota_tables
    from agenttasks.application.spend_ledger import ensure_budget_tables
    from agenttasks.projections.base import ensure_tables
    from agenttasks.projections.selfcheck import HEALTH_DDL
    from agenttasks.workers import heartbeats

    chosen = list(projections().values())
    with (
        psycopg.connect(database_url) as connection,
        connection.transaction(),
        connection.cursor() as cursor,
    ):
        ensure_tables(cursor, chosen, [p.live_tables() for p in chosen])
        quarantine.ensure_table(cursor)  # /ready reads these before any relay may have run
        heartbeats.ensure_table(cursor)  # the Workers view reads it before any worker ran
        relay_status.ensure_table(cursor)
        deletion.ensure_table(cursor)
        cursor.execute(HEALTH_DDL)
        ensure_quota_tables(cursor)  # the API counts quotas from its first request
        ensure_budget_tables(cursor)  # budgets' ledger: the API and the workers read it


# The API -----------------------------------------------------------------------------------


def api_config(settings: Settings) -> ApiConfig:
    """What the app needs before it starts."""
    from agenttasks.api.deps import ApiConfig

    require_database(settings)
    return ApiConfig(
        jwt_secret=require_secret(settings),
        cors_origins=settings.cors_origins,
        cors_allow_credentials=settings.cors_allow_credentials,
        plugins=_http_tracing(settings),
        token_cache_size=settings.token_cache_size,
    )


def _http_tracing(settings: Settings) -> tuple[Any, ...]:
    """Litestar's OpenTelemetry plugin when spans are exported; nothing imported otherwise."""
    if settings.otel_endpoint is None:
        return ()
    from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin

    return (OpenTelemetryPlugin(OpenTelemetryConfig()),)


def user_limits(settings: Settings, store: EventStore) -> UserLimitsCommands:
    """Users' limits: the settings' defaults under the admins' overrides (UserLimits events)."""
    from agenttasks.application.user_limits import Limits as UserQuota
    from agenttasks.application.user_limits import UserLimitsCommands
    from agenttasks.domain.limits import parse_rate

    defaults = UserQuota(parse_rate(settings.rate_limit), settings.max_active_tasks)
    return UserLimitsCommands(store, defaults)


def budgets(settings: Settings, store: EventStore, pool: AsyncConnectionPool[Any]) -> Budgets:
    """Budgets as admins set them over AGENTTASKS_DEFAULT_BUDGET, and the spending ledger."""
    from agenttasks.application.budgets import (
        BudgetCommands,
        BudgetDefaults,
        BudgetLookup,
        Budgets,
    )
    from agenttasks.application.spend_ledger import SpendLedger

    defaults = BudgetDefaults(settings.default_budget, settings.budget_soft_limit_percent)
    commands = BudgetCommands(store, defaults)
    return Budgets(
        commands,
        BudgetLookup(commands.effective, ttl=settings.budgets_cache_seconds),
        SpendLedger(pool, settings.budget_lease_seconds),
    )


def budget_guard(
    settings: Settings, store: EventStore, pool: AsyncConnectionPool[Any]
) -> CallBudget:
    """The workers' check of every model call against budgets and task caps (docs/cost.md)."""
    from agenttasks.application.budgets import alert_recorder
    from agenttasks.workers.budget_guard import BudgetGuard

    found = budgets(settings, store, pool)
    return BudgetGuard(
        found.ledger,
        found.lookup.get,
        alert_recorder(store),
        max_task_cost=settings.max_task_cost,
    )


def live_updates(settings: Settings, store: EventStore, bus: Bus) -> LiveUpdates:
    """The live streams' hub (fed from NATS), history reader and per-user stream slots."""
    from agenttasks.application.bus_payloads import mapper_for
    from agenttasks.application.user_log import UserLog
    from agenttasks.bus.live_events import LiveTaskEvents
    from agenttasks.live.history import History
    from agenttasks.live.hub import Hub
    from agenttasks.live.service import LiveUpdates
    from agenttasks.live.slots import StreamSlots

    history = History(
        UserLog(store),
        mapper_for(store),
        # History reads get their own threads, so a reconnect storm cannot starve commands.
        ThreadPoolExecutor(4, thread_name_prefix="live-history"),
        max_catch_up_events=settings.max_catch_up_events,
    )
    return LiveUpdates(
        Hub(LiveTaskEvents(bus)), history, StreamSlots(settings.max_streams_per_user)
    )


@asynccontextmanager
async def open_api_deps(
    settings: Settings, *, keepalive_seconds: float = KEEPALIVE_SECONDS
) -> AsyncIterator[ApiDeps]:
    """Every collaborator of the API, open (on the running loop) until the block ends."""
    from psycopg_pool import AsyncConnectionPool

    from agenttasks.api.deps import ApiDeps
    from agenttasks.api.health import readiness_checks
    from agenttasks.application.loop_commit import LoopCommitter
    from agenttasks.application.quotas import Quotas
    from agenttasks.application.store import close, open_event_store
    from agenttasks.application.user_limits import LimitsLookup
    from agenttasks.bus.connection import connect
    from agenttasks.offload import StoreThreads
    from agenttasks.projections.positions import ProjectionWatcher
    from agenttasks.projections.statistics_queries import StatisticsQueries
    from agenttasks.projections.task_queries import TaskQueries
    from agenttasks.projections.template_queries import TemplateQueries
    from agenttasks.projections.worker_queries import WorkerQueries
    from agenttasks.webhooks.service import WebhookService
    from agenttasks.webhooks.store import ensure_tables as ensure_webhook_tables

    database_url = require_database(settings)
    async with contextlib.AsyncExitStack() as opened:
        # Last to close: a command still running finishes on a store that is still open.
        executor = StoreThreads(32, name="command")  # lighter per call (offload.py)
        opened.callback(executor.shutdown, wait=False)
        store = await asyncio.to_thread(open_event_store, settings.eventsourcing_env())
        opened.callback(close, store)
        await asyncio.to_thread(ensure_read_models, database_url)
        # One kept open when idle; the rest opened when requests need them (operations.md).
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            database_url, min_size=1, max_size=16, open=False
        )
        await pool.open()
        opened.push_async_callback(pool.close)
        async with pool.connection() as connection:
            await ensure_webhook_tables(connection)
        watcher = ProjectionWatcher(database_url)
        await watcher.start()
        opened.push_async_callback(watcher.stop)
        bus = await connect(settings.nats_url_for("api"), "agenttasks-api")
        opened.push_async_callback(bus.close)
        live = live_updates(settings, store, bus)
        await live.start()
        opened.push_async_callback(live.stop)
        commands = task_commands(store)
        limits = user_limits(settings, store)
        # Creates are saved on this loop, in batches (application/loop_commit.py).
        creates = LoopCommitter(store, database_url)
        opened.push_async_callback(creates.close)
        yield ApiDeps(
            commands=commands,
            templates=template_commands(store, commands, settings),
            queries=TaskQueries(pool),
            template_queries=TemplateQueries(pool),
            statistics=StatisticsQueries(pool),
            workers=WorkerQueries(pool, bus, lost_after_seconds=settings.worker_lost_seconds),
            watcher=watcher,
            bus=bus,
            live=live,
            webhooks=WebhookService(
                pool,
                webhook_limits(settings),
                settings.fetch_allowed_hosts,
                require_secret(settings),
            ),
            quotas=Quotas(pool),
            user_limits=limits,
            limits=LimitsLookup(limits.effective, ttl=settings.limits_cache_seconds),
            budgets=budgets(settings, store, pool),
            ready_checks=readiness_checks(
                pool=pool,
                newest=store.recorder.max_notification_id,
                watcher=watcher,
                read_models=projections(),
                open_bus=lambda: connect(
                    settings.nats_url_for("api"), "agenttasks-ready", connect_timeout=1.0
                ),
                relay_stall_seconds=settings.relay_stall_seconds,
            ),
            executor=executor,
            keepalive_seconds=keepalive_seconds,
            read_your_writes_timeout=settings.read_wait_ms / 1000,
            workers_list_max=settings.workers_list_max,
            metrics=api_metrics(settings, store, pool, bus, live),
            creates=creates,
        )


def api_metrics(
    settings: Settings,
    store: EventStore,
    pool: AsyncConnectionPool[Any],
    bus: Bus,
    live: LiveUpdates,
) -> ApiMetrics:
    """GET /metrics: the system-wide collector (cached) and this process's stream gauge."""
    from agenttasks.metrics.process import LIVE_STREAMS
    from agenttasks.metrics.system import ApiMetrics, SystemMetrics

    LIVE_STREAMS.set_function(lambda: live.slots.total)
    system = SystemMetrics(
        pool=pool,
        newest=store.recorder.max_notification_id,
        bus=bus,
        read_models=projections(),
        cache_seconds=settings.metrics_cache_seconds,
    )
    return ApiMetrics(system, settings.metrics_token)


def api_app(
    settings: Settings,
    *,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
    on_open: Callable[[ApiDeps], None] | None = None,
) -> Litestar:
    """The API application; its collaborators open when it starts (`on_open` sees them)."""
    from agenttasks.api.app import create_app

    @asynccontextmanager
    async def opened() -> AsyncIterator[ApiDeps]:
        async with open_api_deps(settings, keepalive_seconds=keepalive_seconds) as deps:
            if on_open is not None:
                on_open(deps)
            yield deps

    return create_app(api_config(settings), opened)


# Workers -----------------------------------------------------------------------------------


def fetcher(settings: Settings) -> Fetcher:
    """The guarded web fetcher, with the settings' hosts and caps."""
    from agenttasks.workers.fetch import Fetcher

    return Fetcher(
        settings.fetch_allowed_hosts,
        max_bytes=settings.fetch_max_bytes,
        extract_timeout=float(settings.extract_timeout),
        extract_processes=settings.extract_processes,
    )


def language_model(settings: Settings) -> LanguageModel | None:
    """The configured OpenAI-compatible model, or None: then the offline engine does the work."""
    from agenttasks.workers.llm import model_from_settings

    model = model_from_settings(settings)
    if model is None:
        log.info("no OPENAI_API_KEY: tasks run on the offline engine")
    return model


@asynccontextmanager
async def worker(
    settings: Settings,
    store: EventStore,
    bus: Bus,
    options: WorkerOptions,
    *,
    llm: LanguageModel | None,
    fetcher: Fetcher,
    engine: str = "auto",
    agents: dict[str, Agent] | None = None,
    limits: Limits | None = None,
    threads: int = 32,
    watchdog_every: float = 2.0,
    budget: CallBudget | None = None,
) -> AsyncIterator[tuple[Worker, Watchdog]]:
    """A worker and its watchdog on one thread pool; closes the fetcher and the threads after.

    `agents` replaces some of the engine's agents and `limits` the settings' caps (tests);
    `budget` checks every model call (docs/cost.md; None: no budget).
    """
    from psycopg_pool import AsyncConnectionPool

    from agenttasks.application.loop_commit import LoopCommitter
    from agenttasks.application.prices import PriceTable
    from agenttasks.application.store import OrderedAppendRecorder
    from agenttasks.application.user_slots import UserSlots
    from agenttasks.offload import StoreThreads
    from agenttasks.projections.overdue_queries import OverdueAttempts
    from agenttasks.workers.agents import agents_for
    from agenttasks.workers.heartbeats import Heartbeats, WorkerIdentity
    from agenttasks.workers.limits import Limits
    from agenttasks.workers.loop_start import LoopStarts
    from agenttasks.workers.runtime import Worker
    from agenttasks.workers.watchdog import Watchdog

    # Lighter per store call than a ThreadPoolExecutor (offload.py).
    executor = StoreThreads(threads, name="worker-store")
    commands = task_commands(store)
    opened = contextlib.AsyncExitStack()
    # The heartbeats (one upsert per interval) and the per-user slots share one small pool.
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        require_database(settings), min_size=1, max_size=4, open=False
    )
    await pool.open()
    opened.push_async_callback(pool.close)
    slots = None
    if settings.max_running_per_user > 0:
        slots = UserSlots(pool, settings.max_running_per_user, options.ack_wait)
        await slots.ensure_table()
    presence = Heartbeats(
        pool,
        WorkerIdentity(options.worker_id, options.types, options.concurrency),
        every=float(settings.worker_heartbeat_seconds),
    )
    await presence.ensure_table()
    prices = PriceTable.from_settings(settings)
    if llm is not None:  # off the event loop: the first model call must not wait for it
        await asyncio.to_thread(prices.load)
    # Attempt 1 started on the event loop, on a connection of its own (workers/loop_start.py).
    starts = writes = None
    if isinstance(store.recorder, OrderedAppendRecorder):
        starts = LoopStarts(store, require_database(settings))
        opened.push_async_callback(starts.close)
        # Its reports too, in a group commit of the loop's own (workers/context.py).
        writes = LoopCommitter(store, require_database(settings))
        opened.push_async_callback(writes.close)
    running = Worker(
        commands,
        bus,
        {**agents_for(engine), **(agents or {})},
        llm=llm,
        fetcher=fetcher,
        options=options,
        executor=executor,
        limits=limits or Limits.from_settings(settings),
        slots=slots,
        presence=presence,
        prices=prices,
        budget=budget if budget is not None else budget_guard(settings, store, pool),
        starts=starts,
        writes=writes,
    )
    overdue = OverdueAttempts(require_database(settings))
    watchdog = Watchdog(commands, bus, overdue, executor, every=watchdog_every)
    try:
        yield running, watchdog
    finally:
        await fetcher.aclose()
        executor.shutdown(wait=True)
        await opened.aclose()


# Maintenance -------------------------------------------------------------------------------


@asynccontextmanager
async def maintenance(
    settings: Settings, store: EventStore, *, threads: int = 8
) -> AsyncIterator[Maintenance]:
    """The maintenance role: its leader election and its jobs (threads closed afterwards)."""
    from agenttasks.maintenance.leader import Maintenance
    from agenttasks.maintenance.scheduler import Scheduler

    database_url = require_database(settings)
    executor = ThreadPoolExecutor(threads, thread_name_prefix="maintenance")
    try:
        jobs = maintenance_jobs(settings, task_commands(store), executor)
        yield Maintenance(database_url, Scheduler(jobs))
    finally:
        executor.shutdown(wait=True)


def maintenance_jobs(
    settings: Settings, commands: TaskCommands, executor: ThreadPoolExecutor
) -> list[Job]:
    """The jobs the maintenance leader runs, each on its interval (off ones left out)."""
    from datetime import timedelta

    from agenttasks.maintenance import jobs
    from agenttasks.maintenance.scheduler import Job
    from agenttasks.projections.overdue_queries import OverdueAttempts
    from agenttasks.projections.pending_queries import StalePending
    from agenttasks.workers.watchdog import Watchdog

    database_url = require_database(settings)
    batch = settings.maintenance_batch
    chosen: list[Job] = []
    if settings.pending_ttl is not None:
        expiry = jobs.ExpirePending(
            commands, StalePending(database_url), settings.pending_ttl, executor, batch=batch
        )
        chosen.append(Job("expiry", settings.maintenance_expiry_seconds, expiry.sweep))
    watchdog = Watchdog(commands, None, OverdueAttempts(database_url, limit=batch), executor)
    sweep = jobs.TimeoutSweep(watchdog, batch=batch)
    chosen.append(Job("watchdog", settings.maintenance_watchdog_seconds, sweep.sweep))
    purge = _retention_purge(settings, batch)
    if purge is not None:
        chosen.append(Job("purge", settings.maintenance_purge_seconds, purge.sweep))
    liveness = jobs.WorkerLiveness(
        database_url,
        lost_after=timedelta(seconds=settings.worker_lost_seconds),
        forget_after=timedelta(seconds=settings.worker_forget_seconds),
        batch=settings.maintenance_batch,
    )
    chosen.append(Job("liveness", settings.maintenance_liveness_seconds, liveness.sweep))
    # Always on: an ended period's ledger rows serve no budget (the spending is in read models).
    ledger = jobs.LedgerPurge(
        database_url, grace=timedelta(seconds=settings.budget_lease_seconds), batch=batch
    )
    chosen.append(Job("ledger", settings.maintenance_purge_seconds, ledger.sweep))
    return chosen


def _retention_purge(settings: Settings, batch: int) -> RetentionPurge | None:
    # The purger is DEL's (retention.py, `build_purger`); the schedule is the maintenance role's.
    from agenttasks.maintenance.jobs import RetentionPurge

    if settings.retention is None:
        return None
    return RetentionPurge(lambda: build_purger(settings), settings.retention, batch=batch)


# Webhooks ----------------------------------------------------------------------------------


def webhook_limits(settings: Settings) -> WebhookLimits:
    """What a user may register, from the `webhook_*` settings."""
    from agenttasks.application.webhooks import WebhookLimits

    return settings.caps(WebhookLimits, "webhook_")


@asynccontextmanager
async def deliverer(
    settings: Settings, store: EventStore, bus: Bus, *, sender: Sender | None = None
) -> AsyncIterator[Deliverer]:
    """The webhook deliverer on its own pool and sender, closed afterwards (`sender`: tests)."""
    from psycopg_pool import AsyncConnectionPool

    from agenttasks.webhooks.deliverer import Deliverer, DeliveryOptions
    from agenttasks.webhooks.sender import Sender

    database_url = require_database(settings)
    options = DeliveryOptions(
        concurrency=settings.webhook_concurrency,
        concurrency_per_endpoint=settings.webhook_concurrency_per_endpoint,
        timeout=float(settings.webhook_timeout),
        retry_seconds=settings.webhook_retry_seconds,
        task_url_cache=settings.webhook_task_url_cache,
        owner_cache=settings.webhook_owner_cache,
    )
    sender = sender or Sender(
        settings.fetch_allowed_hosts,
        timeout=options.timeout,
        max_response_bytes=settings.webhook_max_response_bytes,
    )
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        database_url, min_size=1, max_size=options.concurrency + 2, open=False
    )
    await pool.open()
    try:
        yield Deliverer(pool, bus, store, sender, options, require_secret(settings))
    finally:
        await sender.aclose()
        await pool.close()
