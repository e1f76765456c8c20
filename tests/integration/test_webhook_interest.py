"""The deliverer passes over endings nobody asked for, and still delivers everything asked for.

An ending whose owner has no endpoint and whose task has no webhook_url is acked with no
database work; a task's own URL comes from its Created message; an endpoint registered while
the deliverer runs is heard of (LISTEN/NOTIFY) and gets the endings that follow.
"""

from __future__ import annotations

import asyncio
import dataclasses

import psycopg

from agenttasks import bootstrap
from agenttasks.application.webhooks import task_url_secret
from agenttasks.bus.connection import connect
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.webhooks.deliverer import Deliverer
from tests.integration.api_client import SECRET
from tests.integration.stack import running_stack
from tests.integration.test_webhooks import Receiver, deliverer_settings, finish, register
from tests.waiting import wait_until


def deliveries(database_url: str) -> int:
    with psycopg.connect(database_url) as connection:
        row = connection.execute("SELECT count(*) FROM webhook_deliveries").fetchone()
    return int(row[0]) if row else 0


async def test_endings_nobody_asked_for_skip_the_database_and_a_new_endpoint_gets_the_next(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    receiver = Receiver({"/task": task_url_secret(SECRET, "alice")})
    await receiver.start()
    stop = asyncio.Event()
    found: list[Deliverer] = []

    async def run() -> None:
        bus = await connect(nats_server.url_for("deliverer"), "test-deliverer-interest")
        try:
            # The last assertion counts each delivery accepted once: with the shared 2 s attempt
            # timeout, an answer this loop was too busy to read in time (a loaded machine) was
            # retried and accepted twice. What this test is about is not the timeout.
            settings = dataclasses.replace(deliverer_settings(database_url), webhook_timeout=30)
            async with bootstrap.deliverer(settings, stack.store, bus) as deliverer:
                found.append(deliverer)
                await deliverer.run(stop)
        finally:
            await bus.close()

    async with running_stack(database_url, nats_server) as stack:
        running = asyncio.create_task(run())
        try:
            await wait_until(lambda: bool(found) and found[0].owners.refreshes >= 1)
            deliverer = found[0]
            assert deliverer.owners.has_none("alice")

            await asyncio.to_thread(finish, stack, "completed")  # no endpoint, no URL
            await wait_until(lambda: deliverer.skipped == 1)
            assert deliveries(database_url) == 0

            # A task's own URL, known from its Created message: delivered, no endpoint needed.
            position = await asyncio.to_thread(
                finish, stack, "failed", webhook_url=receiver.url("/task")
            )
            await wait_until(lambda: ("/task", f"agenttasks:{position}") in receiver.accepted, 30)

            # An endpoint registered while the deliverer runs: the cache hears of it at once.
            _, secret = await register(database_url, receiver.url("/hook"), ["task.completed"])
            receiver.secrets["/hook"] = secret
            await wait_until(lambda: not deliverer.owners.has_none("alice"))
            position = await asyncio.to_thread(finish, stack, "completed")
            await wait_until(lambda: ("/hook", f"agenttasks:{position}") in receiver.accepted, 30)
            assert deliverer.skipped == 1
        finally:
            stop.set()
            await running
            await receiver.stop()
    assert receiver.bad_signatures == 0
    assert set(receiver.accepted.values()) == {1}
