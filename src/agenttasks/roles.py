"""The process roles (`agenttasks api`, `relay`, `project`, `worker`, `deliver`, `maintain`),
until signalled.

Each role resolves its settings, builds its parts through bootstrap.py and runs them; `up`
(up.py) starts the servers and runs the roles as child processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from agenttasks import bootstrap
from agenttasks.bus.connection import connect
from agenttasks.domain.rules import TASK_TYPES
from agenttasks.settings import Settings, SettingsError

if TYPE_CHECKING:  # the worker's modules (agents, openai) load in the worker role only
    from agenttasks.workers.runtime import WorkerOptions

ENGINES = ("auto", "offline", "instant")


def run_api(settings: Settings) -> int:
    """Serves the HTTP API with uvicorn until SIGTERM/SIGINT."""
    import uvicorn

    settings = bootstrap.resolve(settings)
    # uvicorn re-raises the signal it stopped on once it has shut down; with this handler the
    # process then ends through SystemExit, so exit handlers (the span exporter's flush) run.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    uvicorn.run(
        bootstrap.api_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        log_config=None,  # its records go through our one handler (observability/logs.py)
        access_log=False,
        loop="uvloop",
        http="httptools",
        # Live streams never end by themselves: on SIGTERM give them this long, then cancel
        # them (clients reconnect with Last-Event-ID, to another replica if there is one).
        timeout_graceful_shutdown=5,
    )
    return 0


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def run_relay(settings: Settings) -> int:
    """Publishes stored events to JetStream until stopped."""
    settings = bootstrap.resolve(settings)
    database_url = bootstrap.require_database(settings)

    async def main(stop: asyncio.Event) -> None:
        bus = await connect(settings.nats_url_for("relay"), "agenttasks-relay")
        with bootstrap.event_store(settings) as store:
            try:
                relay = bootstrap.relay(
                    store,
                    database_url,
                    bus,
                    stream_replicas=settings.stream_replicas,
                    stream_max_age=settings.stream_max_seconds,
                )
                await relay.run(stop)
            finally:
                await bus.close()

    return run_until_signalled(main, _metrics(settings, "relay"))


def run_projectors(settings: Settings, names: list[str]) -> int:
    """Keeps the named read models (default: all) up to date until stopped."""
    settings = bootstrap.resolve(settings)
    bootstrap.require_database(settings)
    chosen = bootstrap.chosen_projections(names)

    async def main(stop: asyncio.Event) -> None:
        bus = await connect(settings.nats_url_for("projector"), "agenttasks-projector")
        try:
            with bootstrap.event_store(settings) as store:
                projector, check = bootstrap.projector(settings, store, bus, chosen)
                await asyncio.gather(projector.run(stop), check.run(stop))
        finally:
            await bus.close()

    return run_until_signalled(main, _metrics(settings, "project"))


def run_worker(settings: Settings, options: WorkerOptions, engine: str = "auto") -> int:
    """Runs agents on tasks of the given types until stopped (then hands back what it holds)."""
    settings = bootstrap.resolve(settings)
    bootstrap.require_database(settings)
    unknown = [t for t in options.types if t not in TASK_TYPES]
    if unknown:
        raise SettingsError(f"unknown task type(s) {unknown}; known: {', '.join(TASK_TYPES)}")
    if engine not in ENGINES:
        raise SettingsError(f"unknown engine {engine!r}; one of: {', '.join(ENGINES)}")

    async def main(stop: asyncio.Event) -> None:
        bus = await connect(
            settings.nats_url_for("worker"), f"agenttasks-worker-{options.worker_id}"
        )
        llm = bootstrap.language_model(settings) if engine == "auto" else None
        if llm is not None:
            from agenttasks.metrics.llm import MeteredModel

            llm = MeteredModel(llm)  # agenttasks_llm_tokens_total of this process
        try:
            with bootstrap.event_store(settings) as store:
                async with bootstrap.worker(
                    settings,
                    store,
                    bus,
                    options,
                    llm=llm,
                    fetcher=bootstrap.fetcher(settings),
                    engine=engine,
                ) as (worker, watchdog):
                    await asyncio.gather(worker.run(stop), watchdog.run(stop))
        finally:
            if llm is not None:
                await llm.aclose()
            await bus.close()

    return run_until_signalled(main, _metrics(settings, "worker"))


def run_deliverer(settings: Settings) -> int:
    """Delivers webhooks for task endings until stopped (attempts under way are finished)."""
    settings = bootstrap.resolve(settings)
    bootstrap.require_database(settings)

    async def main(stop: asyncio.Event) -> None:
        bus = await connect(settings.nats_url_for("deliverer"), "agenttasks-deliverer")
        try:
            with bootstrap.event_store(settings) as store:
                async with bootstrap.deliverer(settings, store, bus) as deliverer:
                    await deliverer.run(stop)
        finally:
            await bus.close()

    return run_until_signalled(main, _metrics(settings, "deliver"))


def run_maintenance(settings: Settings) -> int:
    """Leads the housekeeping jobs, or stands by for the leader, until stopped."""
    settings = bootstrap.resolve(settings)
    bootstrap.require_database(settings)

    async def main(stop: asyncio.Event) -> None:
        with bootstrap.event_store(settings) as store:
            async with bootstrap.maintenance(settings, store) as maintenance:
                from agenttasks.metrics.process import MAINTENANCE_LEADER

                MAINTENANCE_LEADER.set_function(lambda: float(maintenance.is_leader))
                await maintenance.run(stop)

    return run_until_signalled(main, _metrics(settings, "maintain"))


def _metrics(settings: Settings, role: str) -> AbstractContextManager[object]:
    """This role's /metrics server (metrics/exposition.py), on while the role runs."""
    from agenttasks.metrics.exposition import serving

    return serving(settings, role)


def run_until_signalled(
    main: Callable[[asyncio.Event], Awaitable[None]],
    metrics: AbstractContextManager[object] | None = None,
) -> int:
    """Runs `main(stop)` on a new event loop, inside `metrics`; SIGTERM or SIGINT sets `stop`."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await main(stop)

    with contextlib.suppress(KeyboardInterrupt), metrics or contextlib.nullcontext():
        asyncio.run(runner())
    return 0
