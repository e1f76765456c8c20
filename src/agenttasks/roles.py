"""The process roles (`agenttasks api`, `relay`, `project`, `worker`, `deliver`, `maintain`),
until signalled.

Each role resolves its settings, builds its parts through bootstrap.py and runs them; `up`
(up.py) starts the servers and runs the roles as child processes. The background roles can also
share one process (`agenttasks run relay,project,deliver,maintain`, together.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from agenttasks import bootstrap
from agenttasks.bus.connection import connect
from agenttasks.domain.rules import TASK_TYPES
from agenttasks.settings import Settings, SettingsError

if TYPE_CHECKING:  # the worker's modules (agents, openai) load in the worker role only
    from agenttasks.workers.runtime import WorkerOptions

ENGINES = ("auto", "offline", "instant")

Main = Callable[[asyncio.Event], Coroutine[Any, Any, None]]  # a role's work, until `stop`


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
    return run_until_signalled(relay_main(settings), _metrics(settings, "relay"))


def relay_main(settings: Settings) -> Main:
    """The relay's work, until `stop` is set."""
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

    return main


def run_projectors(settings: Settings, names: list[str]) -> int:
    """Keeps the named read models (default: all) up to date until stopped."""
    return run_until_signalled(projectors_main(settings, names), _metrics(settings, "project"))


def projectors_main(settings: Settings, names: list[str]) -> Main:
    """The projectors' work (the named read models; default all), until `stop` is set."""
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

    return main


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
    return run_until_signalled(deliverer_main(settings), _metrics(settings, "deliver"))


def deliverer_main(settings: Settings) -> Main:
    """The deliverer's work, until `stop` is set."""
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

    return main


def run_maintenance(settings: Settings) -> int:
    """Leads the housekeeping jobs, or stands by for the leader, until stopped."""
    return run_until_signalled(maintenance_main(settings), _metrics(settings, "maintain"))


def maintenance_main(settings: Settings) -> Main:
    """The housekeeping's work (leading or standing by), until `stop` is set."""
    settings = bootstrap.resolve(settings)
    bootstrap.require_database(settings)

    async def main(stop: asyncio.Event) -> None:
        with bootstrap.event_store(settings) as store:
            async with bootstrap.maintenance(settings, store) as maintenance:
                from agenttasks.metrics.process import MAINTENANCE_LEADER

                MAINTENANCE_LEADER.set_function(lambda: float(maintenance.is_leader))
                await maintenance.run(stop)

    return main


def run_roles(settings: Settings, names: Sequence[str]) -> int:
    """Runs several background roles in this one process until signalled (together.py)."""
    from agenttasks.together import run_together

    builders: dict[str, Callable[[Settings], Main]] = {
        "relay": relay_main,
        "project": lambda chosen: projectors_main(chosen, []),
        "deliver": deliverer_main,
        "maintain": maintenance_main,
    }
    mains = {name: builders[name](settings) for name in names}

    async def main(stop: asyncio.Event) -> None:
        await run_together(mains, stop)

    return run_until_signalled(main, _metrics_together(settings, names))


@contextlib.contextmanager
def _metrics_together(settings: Settings, names: Sequence[str]) -> Iterator[object]:
    """One /metrics for the process, on its first role's port, naming every role in it."""
    # prometheus_client's registry is the process's: the same figures on every role's port
    # would count this process once per port in any sum over the scraped targets.
    from agenttasks.metrics.process import ROLE

    with _metrics(settings, names[0]) as address:
        for name in names[1:]:
            ROLE.labels(name).set(1)
        yield address


def _metrics(settings: Settings, role: str) -> AbstractContextManager[object]:
    """This role's /metrics server (metrics/exposition.py), on while the role runs."""
    from agenttasks.metrics.exposition import serving

    return serving(settings, role)


def run_until_signalled(main: Main, metrics: AbstractContextManager[object] | None = None) -> int:
    """Runs `main(stop)` on a new event loop, inside `metrics`; SIGTERM or SIGINT sets `stop`."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await main(stop)

    import uvloop

    # uvloop, as the API's uvicorn runs: 9-19% less CPU per relay wake-up (docs/performance.md).
    with contextlib.suppress(KeyboardInterrupt), metrics or contextlib.nullcontext():
        uvloop.run(runner())
    return 0
