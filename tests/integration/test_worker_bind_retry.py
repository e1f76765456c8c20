"""A worker whose consumers cannot be bound yet (NATS timing out) keeps trying, never exits."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agenttasks.bus.connection import connect
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.workers.consumers import bind_all
from tests.waiting import wait_until


async def test_binding_the_consumers_is_retried_while_nats_times_out(
    nats_server: EmbeddedNats, caplog: pytest.LogCaptureFixture
) -> None:
    relay = await connect(nats_server.url_for("relay"), "test-relay")
    # The api user may not create durable consumers: NATS answers nothing, a plain timeout,
    # as it does while a cluster elects a consumer's leader.
    refused = await connect(nats_server.url_for("api"), "test-refused")
    try:
        await relay.ensure_stream()
        caplog.set_level(logging.WARNING, logger="agenttasks.workers.consumers")
        binding = asyncio.create_task(
            bind_all(refused, ("summary",), ack_wait=5, max_deliver=3, max_ack_pending=10)
        )
        await wait_until(lambda: binding.done() or "retrying" in caplog.text, 30, every=0.05)
        assert not binding.done(), binding.exception()
        assert "cannot bind consumer worker-summary-urgent" in caplog.text
        binding.cancel()
        with pytest.raises(asyncio.CancelledError):
            await binding
    finally:
        await refused.close()
        await relay.close()
