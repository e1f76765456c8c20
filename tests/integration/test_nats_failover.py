"""A connection given several NATS servers moves to a live one when its server dies."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from agenttasks.bus.connection import Bus, connect
from agenttasks.servers.nats import EmbeddedNats
from tests.waiting import wait_until

CONNECTIONS = 8


async def test_connections_to_a_dead_server_reconnect_to_the_next_one_listed(
    start_nats_server: Callable[..., EmbeddedNats],
) -> None:
    first, second = start_nats_server(), start_nats_server()
    url = f"{first.url_for('api')},{second.url_for('api')}"
    # nats-py shuffles the list: some connections land on each server.
    buses: list[Bus] = [await connect(url, f"failover-{n}") for n in range(CONNECTIONS)]
    try:

        def on(server: EmbeddedNats) -> list[Bus]:
            return [
                b for b in buses
                if b.nc.is_connected and b.nc.connected_url is not None
                and b.nc.connected_url.port == server.port
            ]  # fmt: skip

        victim, survivor = (first, second) if len(on(first)) >= len(on(second)) else (second, first)
        assert on(victim)
        victim.process.kill()
        victim.process.wait(10)
        # Before the fix, each reconnect retried the first server of a shuffled pool for ever.
        await wait_until(
            lambda: len(on(survivor)) == CONNECTIONS,
            20,
            every=0.05,
            explain=lambda: f"{len(on(survivor))} of {CONNECTIONS} on the live server",
        )
        await asyncio.gather(*(b.nc.flush(2) for b in buses))  # each one works
    finally:
        for bus in buses:
            await bus.close()
