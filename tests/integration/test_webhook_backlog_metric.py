"""The deliverer's health on /metrics: its consumer's backlog, read from JetStream at scrape time
(the deliverer has no /ready of its own; a growing `pending` means no deliverer is running)."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client.core import Metric
from psycopg_pool import AsyncConnectionPool

from agenttasks.application.store import open_event_store
from agenttasks.bootstrap import ensure_read_models
from agenttasks.bus.connection import connect
from agenttasks.metrics.system import WEBHOOK_CONSUMER, SystemMetrics
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.settings import Settings
from agenttasks.webhooks.deliverer import CONSUMER
from tests.integration.test_bus import task_event


def webhook_backlog(families: list[Metric]) -> dict[str, float]:
    [family] = [f for f in families if f.name == "agenttasks_webhook_backlog"]
    return {s.labels["state"]: s.value for s in family.samples}


async def test_the_webhook_backlog_shows_endings_no_deliverer_has_taken(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    assert WEBHOOK_CONSUMER == CONSUMER
    await asyncio.to_thread(ensure_read_models, database_url)
    store = open_event_store(Settings(database_url=database_url).eventsourcing_env())
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        database_url, min_size=1, max_size=2, open=False
    )
    await pool.open()
    relay = await connect(nats_server.url_for("relay"), "test-relay")
    api = await connect(nats_server.url_for("api"), "test-metrics")
    deliverer = await connect(nats_server.url_for("deliverer"), "test-deliverer")
    clock = [0.0]
    system = SystemMetrics(
        pool=pool,
        newest=store.recorder.max_notification_id,
        bus=api,
        read_models=["tasks"],
        cache_seconds=1,
        clock=lambda: clock[0],
    )
    try:
        await relay.ensure_stream()
        await relay.publish_in_order([task_event(n, "completed") for n in (1, 2, 3)], 0)
        assert webhook_backlog(await system.families()) == {}  # no deliverer ever bound

        consumer = await deliverer.pull_consumer(CONSUMER, ack_all=True)
        [taken] = await consumer.fetch(1, 5.0)  # one taken, not acknowledged yet
        clock[0] += 1
        assert webhook_backlog(await system.families()) == {"pending": 2, "in_flight": 1}

        await taken.ack()
        for rest in await consumer.fetch(2, 5.0):
            await rest.ack()
        clock[0] += 1
        assert webhook_backlog(await system.families()) == {"pending": 0, "in_flight": 0}
        await consumer.close()
    finally:
        for bus in (relay, api, deliverer):
            await bus.close()
        await pool.close()
