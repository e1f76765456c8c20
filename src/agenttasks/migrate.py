"""`agenttasks migrate`: creates or upgrades everything the service needs, then exits.

The event store's tables, every read model's tables, the quarantine, relay-status, health
and worker-heartbeat tables, the JetStream event stream (with AGENTTASKS_STREAM_REPLICAS
copies) and the workers' durable consumers. Each step is idempotent, and the whole run holds
one Postgres advisory lock: several machines may run it at once, the later ones wait and then
find everything in place.
The roles still create what they need themselves, so running it is optional on one machine;
on a cluster it runs once before the roles start (compose.yaml, docs/deployment.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import psycopg

from agenttasks import bootstrap
from agenttasks.bus.connection import Bus, connect
from agenttasks.bus.consumers import BusUnavailable
from agenttasks.bus.errors import BusDenied, BusRefused, translated
from agenttasks.domain.rules import TASK_TYPES
from agenttasks.settings import Settings
from agenttasks.workers.backlog import PRIORITY_ORDER
from agenttasks.workers.consumers import bind_all, consumer_name
from agenttasks.workers.runtime import WorkerOptions

log = logging.getLogger(__name__)

MIGRATE_LOCK = 0x61677474_6D696772  # "agttmigr": one migration at a time per database
NATS_SECONDS = 60.0  # a NATS step (connect, stream, consumers) that takes longer fails the run
RETRY_SECONDS = 0.5

T = TypeVar("T")


class MigrationError(RuntimeError):
    """A step could not be done; the message says which and what to check."""


@dataclass(frozen=True)
class Report:
    """What a migration found or made."""

    stream_replicas: int
    consumers_created: tuple[str, ...]
    consumers: int

    def summary(self) -> str:
        """One line for the operator."""
        created = len(self.consumers_created)
        return (
            f"migrated: event store and read models in place; stream with "
            f"{self.stream_replicas} replica(s); {self.consumers} worker consumers "
            f"({created} created)"
        )


def migrate(settings: Settings) -> Report:
    """Creates or upgrades the tables, the stream and the consumers; safe to run concurrently."""
    settings = bootstrap.resolve(settings)
    database_url = bootstrap.require_database(settings)
    try:
        lock = psycopg.connect(database_url, autocommit=True)
    except psycopg.OperationalError:
        raise MigrationError(
            "cannot connect to Postgres (AGENTTASKS_DATABASE_URL): is it running and reachable?"
        ) from None
    with lock:
        # Session-level: released when this connection ends, even if the process dies.
        lock.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK,))
        with bootstrap.event_store(settings):  # constructing it creates the store's tables
            pass
        bootstrap.ensure_read_models(database_url)
        log.info("migrate: event store and read models in place")
        return asyncio.run(_migrate_bus(settings))


async def _migrate_bus(settings: Settings) -> Report:
    relay_bus = await _within(lambda: connect(settings.nats_url_for("relay"), "agenttasks-migrate"))
    try:
        await _within(
            lambda: relay_bus.ensure_stream(settings.stream_replicas, settings.stream_max_seconds),
            settings,
        )
    finally:
        await relay_bus.close()
    log.info("migrate: stream with %d replica(s)", settings.stream_replicas)
    worker_bus = await _within(
        lambda: connect(settings.nats_url_for("worker"), "agenttasks-migrate")
    )
    try:
        created = await _within(lambda: _ensure_worker_consumers(worker_bus), settings)
    finally:
        await worker_bus.close()
    log.info("migrate: %d worker consumers created", len(created))
    return Report(settings.stream_replicas, created, len(PRIORITY_ORDER) * len(TASK_TYPES))


async def _ensure_worker_consumers(bus: Bus) -> tuple[str, ...]:
    """Creates the missing durable consumers; existing ones keep the config workers gave them."""
    missing = [
        (task_type, priority)
        for priority in PRIORITY_ORDER
        for task_type in TASK_TYPES
        if not await bus.has_consumer(consumer_name(task_type, priority))
    ]
    types = tuple(dict.fromkeys(task_type for task_type, _ in missing))
    if not types:
        return ()
    # A worker declares its own options again each time it binds; these are its defaults.
    options = WorkerOptions()
    bound = await bind_all(
        bus,
        types,
        ack_wait=options.ack_wait,
        max_deliver=options.max_deliver,
        max_ack_pending=max(options.prefetch, options.concurrency) * 4,
    )
    for _, consumer in bound:
        await consumer.close()
    return tuple(consumer_name(task_type, priority) for task_type, priority in missing)


async def _within(step: Callable[[], Awaitable[T]], settings: Settings | None = None) -> T:
    """Runs `step` until it succeeds, retrying while JetStream is not ready, for NATS_SECONDS."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + NATS_SECONDS
    while True:
        try:
            # nats-py retries a first connection for ever (max_reconnect_attempts=-1): bound it.
            with translated():
                return await asyncio.wait_for(step(), max(0.1, deadline - loop.time()))
        except (TimeoutError, BusUnavailable):
            # A cluster that just started answers once it has elected its JetStream leader.
            if loop.time() >= deadline:
                raise MigrationError(
                    f"NATS (AGENTTASKS_NATS_URL) did not answer within {NATS_SECONDS:.0f}s"
                ) from None
            log.info("migrate: JetStream not ready yet; retrying")
            await asyncio.sleep(RETRY_SECONDS)
        except BusRefused as error:
            replicas = settings.stream_replicas if settings is not None else 1
            raise MigrationError(
                f"JetStream refused the change (error {error.code}); with "
                f"AGENTTASKS_STREAM_REPLICAS={replicas} the cluster needs at least {replicas} "
                "JetStream servers"
            ) from None
        except BusDenied:
            raise MigrationError(
                "NATS refused the connection or the request: check AGENTTASKS_NATS_URL and the "
                "role's password (AGENTTASKS_NATS_<ROLE>_URL when migrate uses several users)"
            ) from None
