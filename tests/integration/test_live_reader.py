"""The subscriptions docs/events.md shows an outside subscriber, run as the read-only user."""

from __future__ import annotations

import json
from typing import Any

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

from agenttasks.application.tasks import SYSTEM, Actor, NewTask
from agenttasks.servers.nats import EmbeddedNats
from tests.integration.stack import running_stack
from tests.waiting import wait_until


async def test_the_reader_follows_one_task_one_type_or_everything_and_replays_from_the_start(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    errors: list[Exception] = []

    async def report(error: Exception) -> None:
        errors.append(error)

    async with running_stack(database_url, nats_server) as stack:
        commands = stack.commands
        earlier = commands.create(Actor("alice"), NewTask("before", "summary", {"content": "x"}))
        reader = await nats.connect(nats_server.url_for("reader"), error_cb=report)
        seen: dict[str, list[dict[str, Any]]] = {"task": [], "type": [], "all": [], "replay": []}

        def into(name: str) -> Any:
            async def show(message: Any) -> None:
                seen[name].append(json.loads(message.data))

            return show

        try:
            task = commands.create(Actor("alice"), NewTask("watched", "summary", {"content": "x"}))
            await stack.projected()  # published before the live subscriptions start
            await reader.subscribe(f"agenttasks.events.task.*.*.{task.task_id}.*", cb=into("task"))
            await reader.subscribe("agenttasks.events.task.summary.>", cb=into("type"))
            await reader.subscribe("agenttasks.events.>", cb=into("all"))
            await reader.jetstream().subscribe(
                "agenttasks.events.task.summary.>",
                stream="AGENTTASKS_EVENTS",
                ordered_consumer=True,
                config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
                cb=into("replay"),
            )
            await reader.flush()
            other = commands.create(Actor("bob"), NewTask("other", "research", {"topic": "q"}))
            commands.start(task.task_id, 1, "w1")
            commands.complete(task.task_id, 1, {"summary": "done"})
            await wait_until(lambda: len(seen["all"]) >= 3 and len(seen["replay"]) >= 4)
        finally:
            await reader.close()
        watched = [e.position for e in commands.history(SYSTEM, task.task_id)]

    assert [e["position"] for e in seen["task"]] == watched[1:]  # live: after subscribing
    assert [e["position"] for e in seen["type"]] == watched[1:]
    assert [e["position"] for e in seen["all"]] == sorted([*watched[1:], other.position or 0])
    assert [e["position"] for e in seen["replay"]] == [earlier.position, *watched]
    assert errors == []
