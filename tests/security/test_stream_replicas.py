"""AGENTTASKS_STREAM_REPLICAS: bounded, and kept by the relay (it used to reset the stream to 1).

On a 3-node cluster (deploy/nats/cluster.conf, on loopback) `migrate` makes the stream with 3
replicas; the relay that then leads declares the stream with the setting too, so one NATS node
can die without losing an event. Before this setting the relay set 1 replica every time it led.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agenttasks import bootstrap
from agenttasks.application.tasks import Actor, NewTask
from agenttasks.bus.connection import connect
from agenttasks.bus.messages import STREAM
from agenttasks.migrate import MigrationError, migrate
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.settings import Settings, SettingsError
from tests.deployment.cluster import nats_cluster
from tests.waiting import wait_until


@pytest.mark.parametrize("value", ["0", "6", "three", "-1"])
def test_replicas_outside_one_to_five_are_refused_by_name(value: str) -> None:
    with pytest.raises(SettingsError, match="AGENTTASKS_STREAM_REPLICAS must be"):
        Settings.from_env({"AGENTTASKS_STREAM_REPLICAS": value})


def test_more_replicas_than_servers_fail_migrate_with_our_message(
    database_url: str, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    settings = Settings.from_env(
        {
            "AGENTTASKS_HOME": str(tmp_path),
            "AGENTTASKS_DATABASE_URL": database_url,
            "AGENTTASKS_NATS_RELAY_URL": nats_server.url_for("relay"),
            "AGENTTASKS_NATS_WORKER_URL": nats_server.url_for("worker"),
            "AGENTTASKS_STREAM_REPLICAS": "3",
        }
    )
    with pytest.raises(MigrationError) as raised:
        migrate(settings)
    message = str(raised.value)
    assert "AGENTTASKS_STREAM_REPLICAS=3" in message
    assert "at least 3 JetStream servers" in message
    assert "insufficient" not in message.lower(), "our message, not the library's"


def test_the_relay_keeps_the_streams_replicas_on_a_cluster(
    database_url: str, nats_passwords: dict[str, str], tmp_path: Path
) -> None:
    with nats_cluster(tmp_path / "nats", nats_passwords) as cluster:
        settings = Settings.from_env(
            {
                "AGENTTASKS_HOME": str(tmp_path),
                "AGENTTASKS_DATABASE_URL": database_url,
                "AGENTTASKS_NATS_RELAY_URL": cluster.url_for("relay"),
                "AGENTTASKS_NATS_WORKER_URL": cluster.url_for("worker"),
                "AGENTTASKS_STREAM_REPLICAS": "3",
            }
        )
        assert migrate(settings).stream_replicas == 3
        asyncio.run(_relay_leads_and_publishes(settings, database_url))


async def _relay_leads_and_publishes(settings: Settings, database_url: str) -> None:
    bus = await connect(settings.nats_url_for("relay"), "test-relay-replicas")
    try:
        with bootstrap.event_store(settings) as store:
            relay = bootstrap.relay(
                store, database_url, bus, stream_replicas=settings.stream_replicas
            )
            stop = asyncio.Event()
            running = asyncio.create_task(relay.run(stop))
            try:
                written = bootstrap.task_commands(store).create(
                    Actor("alice"), NewTask("t", "summary", {"content": "x"})
                )
                # Published means it led, and declared the stream, before this message went out.
                await wait_until(lambda: relay.published_position >= written.position)
            finally:
                stop.set()
                await running
        info = await bus.js.stream_info(STREAM)
        assert info.config.num_replicas == 3
        assert info.cluster is not None
        assert len(info.cluster.replicas or []) == 2, "a leader and two followers"
    finally:
        await bus.close()
