"""Connecting to NATS and declaring the event stream. The bus package is the only user of nats-py.

nats-py reports permission violations and connection trouble only to `error_cb` (a refused
publish otherwise looks like a plain timeout), so every connection made here logs them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from agenttasks.bus.messages import ALL_SUBJECTS, STREAM

log = logging.getLogger(__name__)

DUPLICATE_WINDOW_SECONDS = 120.0


@dataclass
class Bus:
    """An open NATS connection and its JetStream context."""

    nc: Client
    js: JetStreamContext

    async def close(self) -> None:
        """Closes the connection without waiting out drain timeouts."""
        if not self.nc.is_closed:
            await self.nc.close()


async def connect(url: str, name: str, *, connect_timeout: float = 5.0) -> Bus:
    """Connects to NATS (reconnecting for ever after the first success)."""

    async def on_error(error: Exception) -> None:
        log.warning("NATS (%s): %s", name, error)

    async def on_disconnected() -> None:
        log.info("NATS (%s): disconnected", name)

    async def on_reconnected() -> None:
        log.info("NATS (%s): reconnected", name)

    nc = await nats.connect(
        servers=[url],
        name=name,
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
        connect_timeout=connect_timeout,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,
        allow_reconnect=True,
    )
    return Bus(nc, nc.jetstream())


def stream_config(replicas: int = 1) -> StreamConfig:
    """The event stream: every event kept (LIMITS), de-duplicated by `Nats-Msg-Id`."""
    return StreamConfig(
        name=STREAM,
        subjects=[ALL_SUBJECTS],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        num_replicas=replicas,
    )


async def ensure_stream(js: JetStreamContext, replicas: int = 1) -> None:
    """Creates the event stream, or brings an existing one's config up to date."""
    config = stream_config(replicas)
    try:
        await js.stream_info(STREAM)
    except NotFoundError:
        await js.add_stream(config)
    else:
        await js.update_stream(config)
