"""The system-wide metrics, read from Postgres and JetStream at scrape time, cached briefly.

Any API replica answers the same: task totals, the status gauge and the two histograms come
from the metrics read model (projections/metrics.py), the lags from the store's newest
position against the stream's and the read models' tracking, the backlog from JetStream's
consumer counts (projections/worker_queries.py). A scrape within `cache_seconds` of the last
collection gets the same figures, and concurrent scrapes share one collection, so a hostile
scraper costs Postgres at most one collection per period; every query is bounded by a
statement timeout and the whole collection by a deadline. A source that fails is reported by
`agenttasks_metrics_source_up{source}` = 0 and its figures are left out, never guessed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    GaugeMetricFamily,
    Metric,
)
from psycopg_pool import AsyncConnectionPool

from agenttasks import quarantine
from agenttasks.bus.connection import Bus
from agenttasks.metrics.families import Figures, task_families
from agenttasks.projections.worker_queries import oldest_pending_age, queue_backlog

log = logging.getLogger(__name__)

STATEMENT_TIMEOUT_MS = 2_000  # each query of a collection
COLLECTION_TIMEOUT_SECONDS = 5.0  # the whole collection, NATS included
# webhooks/intake.py's durable consumer (named here so the API imports no deliverer code).
WEBHOOK_CONSUMER = "webhooks-intake"
_FIGURES = """
SELECT metric, task_type, label, sum(value)::bigint FROM (
    SELECT metric, task_type, label, value FROM task_metrics
    UNION ALL SELECT metric, task_type, label, value FROM task_metrics_purged
) m GROUP BY 1, 2, 3
"""


@dataclass
class Snapshot:
    """One collection: the metric families, and when (monotonic) it was taken."""

    families: list[Metric]
    taken: float
    sources: dict[str, bool] = field(default_factory=dict)


class SystemMetrics:
    """Collects the system-wide families at most once per `cache_seconds`."""

    def __init__(
        self,
        *,
        pool: AsyncConnectionPool[Any],
        newest: Callable[[], int | None],
        bus: Bus,
        read_models: Iterable[str],
        cache_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.newest = newest
        self.bus = bus
        self.read_models = tuple(read_models)
        self.cache_seconds = cache_seconds
        self.clock = clock
        self.collections = 0  # how many times Postgres was asked (the tests count them)
        self._snapshot: Snapshot | None = None
        self._lock = asyncio.Lock()

    async def families(self) -> list[Metric]:
        """The families of the last collection, collected again when older than the cache."""
        async with self._lock:  # concurrent scrapes wait for the one collection under way
            snapshot = self._snapshot
            if snapshot is None or self.clock() - snapshot.taken >= self.cache_seconds:
                snapshot = self._snapshot = await self._collect()
            return snapshot.families

    async def _collect(self) -> Snapshot:
        self.collections += 1
        families: list[Metric] = []
        sources: dict[str, bool] = {}
        stored = 0
        for source, part in (
            ("postgres", self._postgres),
            ("nats", self._nats),
        ):
            try:
                found, stored_seen = await asyncio.wait_for(
                    part(stored), COLLECTION_TIMEOUT_SECONDS
                )
            except Exception as error:  # a source that fails is a figure (up=0), not a 500
                log.warning("metrics: %s could not be read (%s)", source, type(error).__name__)
                sources[source] = False
                continue
            stored = max(stored, stored_seen)
            families += found
            sources[source] = True
        up = GaugeMetricFamily(
            "agenttasks_metrics_source_up",
            "1 when this collection could read the source (postgres, nats), else 0",
            labels=["source"],
        )
        for source, ok in sources.items():
            up.add_metric([source], 1.0 if ok else 0.0)
        families.append(up)
        return Snapshot(families, self.clock(), sources)

    async def _postgres(self, _: int) -> tuple[list[Metric], int]:
        stored = await asyncio.to_thread(self.newest) or 0
        async with self.pool.connection() as connection, connection.transaction():
            await connection.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
            rows = await (await connection.execute(_FIGURES)).fetchall()
            tracked = await (
                await connection.execute("SELECT name, position FROM projection_tracking")
            ).fetchall()
            summary = await (await connection.execute(quarantine.SUMMARY_SQL)).fetchone()
            notify = await (
                await connection.execute("SELECT pg_notification_queue_usage()")
            ).fetchone()
        figures: Figures = {(m, t, label): int(v) for m, t, label, v in rows}
        oldest = await oldest_pending_age(self.pool)
        families = [*task_families(figures)]
        positions = {str(name): int(position) for name, position in tracked}
        lag = GaugeMetricFamily(
            "agenttasks_projection_lag_events",
            "Stored events a read model has not applied yet",
            labels=["read_model"],
        )
        for name in self.read_models:
            lag.add_metric([name], float(max(0, stored - positions.get(name, 0))))
        families.append(lag)
        families.append(
            GaugeMetricFamily(
                "agenttasks_quarantined_events",
                "Events a consumer set aside (unresolved; agenttasks quarantine list)",
                value=float(summary[0] if summary else 0),
            )
        )
        families.append(
            GaugeMetricFamily(
                "agenttasks_queue_oldest_age_seconds",
                "Seconds the longest-waiting pending task has waited since it was queued (0: none)",
                value=oldest or 0.0,
            )
        )
        families.append(
            GaugeMetricFamily(
                "agenttasks_store_position", "The event store's newest position", value=stored
            )
        )
        # Every append NOTIFYs with its rows (store.py); a listener that stops reading (a hung
        # relay leader) holds them, and when the queue is full every append fails.
        families.append(
            GaugeMetricFamily(
                "agenttasks_postgres_notify_queue_usage",
                "Fraction (0-1) of Postgres' NOTIFY queue held by notifications not yet read",
                value=float(notify[0]) if notify else 0.0,
            )
        )
        return families, stored

    async def _nats(self, stored: int) -> tuple[list[Metric], int]:
        published, _ = await self.bus.last_published()
        backlog = GaugeMetricFamily(
            "agenttasks_queue_backlog",
            "Messages of each work consumer: pending (not delivered yet) or in_flight (unacked)",
            labels=["task_type", "priority", "state"],
        )
        for depth in await queue_backlog(self.bus):
            backlog.add_metric([depth.task_type, depth.priority, "pending"], depth.pending)
            backlog.add_metric([depth.task_type, depth.priority, "in_flight"], depth.in_flight)
        relay = GaugeMetricFamily(
            "agenttasks_relay_lag_events",
            "Stored events not yet published to the stream",
            value=float(max(0, stored - published)) if stored else 0.0,
        )
        return [backlog, relay, await self._webhook_backlog()], 0

    async def _webhook_backlog(self) -> Metric:
        # The deliverer has no /ready of its own: a `pending` that grows means no deliverer
        # is taking task endings. Absent until a deliverer has created its consumer.
        family = GaugeMetricFamily(
            "agenttasks_webhook_backlog",
            "Messages of the deliverer's consumer: pending (not taken yet) or in_flight (unacked)",
            labels=["state"],
        )
        counts = (await self.bus.consumer_counts([WEBHOOK_CONSUMER])).get(WEBHOOK_CONSUMER)
        if counts is not None:
            family.add_metric(["pending"], counts.pending)
            family.add_metric(["in_flight"], counts.ack_pending)
        return family


@dataclass(frozen=True)
class ApiMetrics:
    """What the API's /metrics needs: the system-wide collector and the optional scrape token."""

    system: SystemMetrics
    token: str | None = None


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def exposition(families: list[Metric]) -> bytes:
    """The Prometheus text of `families`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)
