"""The composition root: builds every adapter from Settings and hands it to the part that uses it.

Each `run_*` function is one process role (`agenttasks api`, `relay`, `project`);
`up` (in up.py) starts servers and runs the roles as child processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import psycopg
from psycopg_pool import AsyncConnectionPool

from agenttasks import quarantine, relay_status, runtime_file
from agenttasks.api.app import create_app
from agenttasks.api.auth import mint_token
from agenttasks.api.deps import ApiDeps
from agenttasks.application.bus_payloads import mapper_for
from agenttasks.application.schema_document import SchemaLimits
from agenttasks.application.store import EventStore, close, open_event_store
from agenttasks.application.tasks import SYSTEM, TaskCommands, TaskNotFound
from agenttasks.application.templates import TemplateCommands, TemplateNotFound
from agenttasks.bus.connection import connect
from agenttasks.bus.live_events import LiveTaskEvents
from agenttasks.domain.rules import TASK_TYPES
from agenttasks.live.history import History
from agenttasks.live.hub import Hub
from agenttasks.live.service import LiveUpdates
from agenttasks.live.slots import StreamSlots
from agenttasks.projections.base import Projection, ensure_tables
from agenttasks.projections.overdue_queries import OverdueAttempts
from agenttasks.projections.positions import ProjectionWatcher
from agenttasks.projections.projector import Projector
from agenttasks.projections.replay import replay as replay_projection
from agenttasks.projections.runner import ProjectionRunner
from agenttasks.projections.selfcheck import HEALTH_DDL, HEALTH_SQL, SelfCheck, summarise
from agenttasks.projections.statistics import statistics_projection
from agenttasks.projections.statistics_queries import StatisticsQueries
from agenttasks.projections.task_queries import TaskQueries
from agenttasks.projections.tasks import task_projection
from agenttasks.projections.template_queries import TemplateQueries
from agenttasks.projections.template_usage import template_usage_projection
from agenttasks.projections.templates import template_projection
from agenttasks.relay import Relay
from agenttasks.servers.secrets import load_secrets
from agenttasks.settings import Settings, SettingsError
from agenttasks.workers.agents import agents_for
from agenttasks.workers.fetch import Fetcher
from agenttasks.workers.limits import Limits
from agenttasks.workers.llm import LanguageModel, model_from_settings
from agenttasks.workers.runtime import Worker, WorkerOptions
from agenttasks.workers.watchdog import Watchdog

log = logging.getLogger(__name__)


def projections() -> dict[str, Projection]:
    """Every read model, by name."""
    return {
        "tasks": task_projection(),
        "templates": template_projection(),
        "template_usage": template_usage_projection(),
        "statistics": statistics_projection(),
    }


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
    if settings.database_url is None:
        raise SettingsError(
            f"no database: set AGENTTASKS_DATABASE_URL, or run `agenttasks up` with the data "
            f"directory {settings.home} first"
        )
    return settings.database_url


@contextmanager
def event_store(settings: Settings) -> Iterator[EventStore]:
    """The event store on the configured Postgres, closed afterwards."""
    store = open_event_store(settings.eventsourcing_env())
    try:
        yield store
    finally:
        close(store)


def token(settings: Settings, user: str, *, admin: bool, ttl: int) -> str:
    """A JWT signed with the service's secret."""
    secret = resolve(settings).jwt_secret
    if secret is None:
        raise SettingsError(
            f"no JWT secret: set AGENTTASKS_JWT_SECRET, or run `agenttasks up` with the data "
            f"directory {settings.home} first"
        )
    try:
        return mint_token(secret, user, admin=admin, ttl=ttl)
    except ValueError as error:
        raise SettingsError(str(error)) from None


# Roles -------------------------------------------------------------------------------------


def run_api(settings: Settings) -> int:
    """Serves the HTTP API with uvicorn until SIGTERM/SIGINT."""
    import uvicorn

    settings = resolve(settings)
    app = create_app(build_api_deps(settings))
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        # Live streams never end by themselves: on SIGTERM give them this long, then cancel
        # them (clients reconnect with Last-Event-ID, to another replica if there is one).
        timeout_graceful_shutdown=5,
    )
    return 0


def schema_limits(settings: Settings) -> SchemaLimits:
    """The caps on template JSON Schemas, from the settings."""
    return SchemaLimits(
        max_bytes=settings.schema_max_bytes,
        max_depth=settings.schema_max_depth,
        max_subschemas=settings.schema_max_subschemas,
        max_pattern_chars=settings.schema_max_pattern_chars,
        max_validation_steps=settings.schema_max_validation_steps,
        max_validation_depth=settings.schema_max_validation_depth,
    )


def build_api_deps(settings: Settings) -> ApiDeps:
    """The API's dependencies, with their start and stop hooks."""
    database_url = require_database(settings)
    if settings.jwt_secret is None:
        raise SettingsError("no JWT secret: set AGENTTASKS_JWT_SECRET")
    store = open_event_store(settings.eventsourcing_env())
    pool = AsyncConnectionPool(database_url, min_size=2, max_size=16, open=False)
    watcher = ProjectionWatcher(database_url)
    commands = TaskCommands(store)
    deps = ApiDeps(
        commands=commands,
        queries=TaskQueries(pool),
        watcher=watcher,
        jwt_secret=settings.jwt_secret,
        cors_origins=settings.cors_origins,
        templates=TemplateCommands(store, commands, schema_limits(settings)),
        template_queries=TemplateQueries(pool),
        statistics=StatisticsQueries(pool),
    )
    deps.ready_checks = readiness_checks(settings, store, pool, watcher)

    async def start() -> None:
        await asyncio.to_thread(ensure_read_models, database_url)
        await pool.open()
        await watcher.start()
        deps.bus = await connect(settings.nats_url_for("api"), "agenttasks-api")
        deps.live = LiveUpdates(
            Hub(LiveTaskEvents(deps.bus)),
            History(store, max_catch_up_events=settings.max_catch_up_events),
            StreamSlots(settings.max_streams_per_user),
        )
        await deps.live.start()

    async def stop() -> None:
        if deps.live is not None:
            await deps.live.stop()
        if deps.bus is not None:
            await deps.bus.close()
        await watcher.stop()
        await pool.close()
        close(store)

    deps.on_startup.append(start)
    deps.on_shutdown.append(stop)
    return deps


def ensure_read_models(database_url: str) -> None:
    """Creates the tracking table and every read model's tables if they do not exist yet."""
    chosen = list(projections().values())
    with (
        psycopg.connect(database_url) as connection,
        connection.transaction(),
        connection.cursor() as cursor,
    ):
        ensure_tables(cursor, chosen, [p.live_tables() for p in chosen])
        quarantine.ensure_table(cursor)  # /ready reads these before any relay may have run
        relay_status.ensure_table(cursor)
        cursor.execute(HEALTH_DDL)


def readiness_checks(
    settings: Settings, store: EventStore, pool: AsyncConnectionPool, watcher: ProjectionWatcher
) -> dict[str, Callable[[], Awaitable[dict[str, Any]]]]:
    """Postgres, NATS, relay lag and projector lag, for GET /ready."""

    async def postgres() -> dict[str, Any]:
        async with pool.connection() as connection:
            await connection.execute("SELECT 1")
        return {"ok": True}

    async def nats_and_relay() -> dict[str, Any]:
        bus = await connect(settings.nats_url_for("api"), "agenttasks-ready", connect_timeout=1.0)
        try:
            published, _ = await bus.last_published()
        finally:
            await bus.close()
        newest = await asyncio.to_thread(store.recorder.max_notification_id) or 0
        async with pool.connection() as connection:
            heartbeat = await relay_status.last_beat(connection)
        return relay_status.relay_health(
            stored=newest,
            published=published,
            heartbeat=heartbeat,
            stall_seconds=settings.relay_stall_seconds,
        )

    async def quarantined() -> dict[str, Any]:
        # A report, not a failure: the pipeline goes on around a quarantined event, and
        # failing every replica's /ready over one event would take the whole service out.
        async with pool.connection() as connection:
            found = await connection.execute(quarantine.SUMMARY_SQL)
            count, newest, seen = (await found.fetchone()) or (0, None, None)
        newest_seen = None if seen is None else seen.isoformat()
        return {"ok": True, "count": count, "newest_position": newest, "newest_seen": newest_seen}

    async def read_model_health() -> dict[str, Any]:
        # What the projectors' self-checks found (projections/selfcheck.py): stalled, or rows
        # missing against the store.
        async with pool.connection() as connection:
            found = await connection.execute(HEALTH_SQL)
            return summarise(await found.fetchall())

    async def lag() -> dict[str, Any]:
        newest = await asyncio.to_thread(store.recorder.max_notification_id) or 0
        result: dict[str, Any] = {"ok": True, "stored": newest}
        for name in projections():
            behind = max(0, newest - await watcher.position(name))
            result[f"{name}_lag"] = behind
        return result

    return {
        "postgres": postgres,
        "nats": nats_and_relay,
        "projections": lag,
        "quarantine": quarantined,
        "read_models": read_model_health,
    }


def run_relay(settings: Settings) -> int:
    """Publishes stored events to JetStream until stopped."""
    settings = resolve(settings)
    database_url = require_database(settings)

    async def main(stop: asyncio.Event) -> None:
        bus = await connect(settings.nats_url_for("relay"), "agenttasks-relay")
        with event_store(settings) as store:
            try:
                await Relay(store, database_url, bus).run(stop)
            finally:
                await bus.close()

    return run_until_signalled(main)


def run_projectors(settings: Settings, names: list[str]) -> int:
    """Keeps the named read models (default: all) up to date until stopped."""
    settings = resolve(settings)
    database_url = require_database(settings)
    available = projections()
    unknown = [name for name in names if name not in available]
    if unknown:
        raise SettingsError(f"unknown read model(s) {unknown}; known: {', '.join(available)}")
    chosen = [available[name] for name in names or available]

    async def main(stop: asyncio.Event) -> None:
        bus = await connect(settings.nats_url_for("projector"), "agenttasks-projector")
        try:
            with event_store(settings) as store:
                # One in-order reader feeds every read model of this process.
                runners = [ProjectionRunner(p, database_url, bus) for p in chosen]
                check = SelfCheck(
                    runners,
                    bus,
                    database_url,
                    store.recorder.events_table_name,  # type: ignore[attr-defined]
                    every=settings.projection_check_seconds,
                    count_every=settings.projection_count_seconds,
                )
                await asyncio.gather(Projector(runners, bus).run(stop), check.run(stop))
        finally:
            await bus.close()

    return run_until_signalled(main)


def run_worker(settings: Settings, options: WorkerOptions, engine: str = "auto") -> int:
    """Runs agents on tasks of the given types until stopped (then hands back what it holds)."""
    settings = resolve(settings)
    database_url = require_database(settings)
    unknown = [t for t in options.types if t not in TASK_TYPES]
    if unknown:
        raise SettingsError(f"unknown task type(s) {unknown}; known: {', '.join(TASK_TYPES)}")
    if engine not in ("auto", "offline", "instant"):
        raise SettingsError(f"unknown engine {engine!r}; one of: auto, offline, instant")

    async def main(stop: asyncio.Event) -> None:
        bus = await connect(
            settings.nats_url_for("worker"), f"agenttasks-worker-{options.worker_id}"
        )
        llm = language_model(settings) if engine == "auto" else None
        fetcher = Fetcher(
            settings.fetch_allowed_hosts,
            max_bytes=settings.fetch_max_bytes,
            extract_timeout=float(settings.extract_timeout),
            extract_processes=settings.extract_processes,
        )
        executor = ThreadPoolExecutor(32, thread_name_prefix="worker-store")
        with event_store(settings) as store:
            commands = TaskCommands(store)
            worker = Worker(
                commands,
                bus,
                agents_for(engine),
                llm=llm,
                fetcher=fetcher,
                options=options,
                executor=executor,
                limits=Limits.from_settings(settings),
            )
            watchdog = Watchdog(commands, bus, OverdueAttempts(database_url), executor)
            try:
                await asyncio.gather(worker.run(stop), watchdog.run(stop))
            finally:
                await fetcher.aclose()
                if llm is not None:
                    await llm.aclose()
                await bus.close()
                executor.shutdown(wait=True)

    return run_until_signalled(main)


def language_model(settings: Settings) -> LanguageModel | None:
    """The configured OpenAI-compatible model, or None: then the offline engine does the work."""
    model = model_from_settings(settings)
    if model is None:
        log.info("no OPENAI_API_KEY: tasks run on the offline engine")
    return model


# Tools -------------------------------------------------------------------------------------


def replay(settings: Settings, name: str, *, verify: bool) -> int:
    """Rebuilds read models from the store with a progress bar; 1 if verify found differences."""
    settings = resolve(settings)
    database_url = require_database(settings)
    available = projections()
    if name != "all" and name not in available:
        raise SettingsError(f"unknown read model {name!r}; known: {', '.join(available)}, all")
    chosen = list(available.values()) if name == "all" else [available[name]]
    status = 0
    with event_store(settings) as store:
        for projection in chosen:
            report = replay_projection(
                projection,
                store,
                mapper_for(store),
                database_url,
                verify=verify,
                progress=_progress_bar(projection.name),
            )
            print(file=sys.stderr)
            action = "verified" if verify else "rebuilt and switched"
            print(
                f"{projection.name}: {action} {report.events} events up to position "
                f"{report.position} in {report.seconds:.2f}s ({report.rate:,.0f} events/s)"
            )
            for difference in report.differences:
                print(f"  {difference}")
            if report.differences:
                status = 1
    return status


def audit(settings: Settings, task_id: str) -> int:
    """Prints a task's (or a template's) event history from the event store."""
    settings = resolve(settings)
    require_database(settings)
    try:
        parsed = UUID(task_id)
    except ValueError:
        raise SettingsError(f"{task_id!r} is not a task id (a UUID)") from None
    from agenttasks.application.bus_payloads import event_fields
    from agenttasks.domain.template import TEMPLATE_KINDS
    from agenttasks.domain.updates import KINDS

    with event_store(settings) as store:
        commands = TaskCommands(store)
        try:
            history = commands.history(SYSTEM, parsed)
        except TaskNotFound:
            try:  # a template's history is an audit trail too
                history = TemplateCommands(store, commands).history(SYSTEM, parsed)
            except TemplateNotFound:
                raise SettingsError(f"no task or template {task_id}") from None
    kinds = {**KINDS, **TEMPLATE_KINDS}
    for item in history:
        kind = kinds.get(type(item.event), type(item.event).__qualname__)
        stamp = item.timestamp.isoformat()
        fields = event_fields(item.event)
        version = item.event.originator_version
        print(f"{item.position:>8}  v{version:<3} {stamp}  {kind:<10} {fields}")
    return 0


def _progress_bar(name: str) -> Callable[[int, int, float], None]:
    def show(position: int, newest: int, rate: float) -> None:
        done = position / newest if newest else 1.0
        bar = "#" * int(done * 30)
        print(
            f"\r{name:<16} [{bar:<30}] {position:>10,}/{newest:,} {rate:>10,.0f} events/s",
            end="",
            file=sys.stderr,
            flush=True,
        )

    return show


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """Runs `main(stop)` on a new event loop; SIGTERM or SIGINT sets `stop`."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await main(stop)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(runner())
    return 0


def check_database(database_url: str) -> None:
    """Fails with a readable message when Postgres cannot be reached."""
    try:
        with psycopg.connect(database_url, connect_timeout=5):
            pass
    except psycopg.Error as error:
        raise SettingsError(f"cannot reach Postgres: {error}") from None
