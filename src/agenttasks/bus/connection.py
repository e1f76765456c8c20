"""Connecting to NATS, and `Bus`: the few operations the rest of the service needs from it.

The bus package is the only user of nats-py: the relay, the workers and the watchdog call the
methods of `Bus` (publish in order, bind a pull consumer, subscribe to a core subject, read one
stored message) and get bytes and `Delivery` objects back, never a nats-py type.

nats-py reports permission violations and connection trouble only to `error_cb` (a refused
publish otherwise looks like a plain timeout), so every connection made here logs them; a lost
connection is logged once when it goes and once when it is back, not at every attempt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Unpack

import nats
from nats.aio.client import Client, Server
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as _NatsSubscription
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from agenttasks.bus import publisher
from agenttasks.bus.consumers import (
    ConsumerCounts,
    ConsumerOptions,
    ConsumerPosition,
    PullConsumer,
    StreamReader,
    consumer_counts,
    consumer_position,
    delete_consumer,
    stream_bounds,
)
from agenttasks.bus.headers import HeaderClient
from agenttasks.bus.messages import ALL_SUBJECTS, STREAM, BusEvent
from agenttasks.outage import Outage, backoff

log = logging.getLogger(__name__)

DUPLICATE_WINDOW_SECONDS = 120.0
FLUSH_SECONDS = 10.0  # nats-py's own default for flush()


@dataclass
class Bus:
    """An open NATS connection and its JetStream context."""

    nc: Client
    js: JetStreamContext

    async def close(self) -> None:
        """Closes the connection without waiting out drain timeouts."""
        if not self.nc.is_closed:
            await self.nc.close()

    async def ensure_stream(self, replicas: int = 1, max_age: float | None = None) -> None:
        """Creates the event stream, or brings an existing one's config up to date.

        `max_age`: seconds a message is kept (None: for ever); Postgres is the source of truth.
        """
        await ensure_stream(self.js, replicas, max_age)

    async def purge_subject(self, subject: str) -> None:
        """Removes every message of the event stream on `subject` (wildcards allowed)."""
        await self.js.purge_stream(STREAM, subject=subject)

    async def last_published(self) -> tuple[int, int]:
        """(position of the last event in the stream, its stream sequence); (0, 0) when empty."""
        return await publisher.last_published(self.js)

    async def publish_in_order(
        self,
        events: Sequence[BusEvent],
        after_sequence: int,
        traceparents: Sequence[str | None] | None = None,
    ) -> int:
        """Publishes `events` after stream message `after_sequence`; returns the new last one."""
        return await publisher.publish_in_order(self.nc, events, after_sequence, traceparents)

    async def pull_consumer(self, name: str, **options: Unpack[ConsumerOptions]) -> PullConsumer:
        """Declares (or updates) durable consumer `name` and binds to it (StreamMissing: none)."""
        # The options and their defaults are PullConsumer.bind's: stated there once.
        return await PullConsumer.bind(self.js, name, **options)

    async def subscribe(
        self, subject: str, handler: Callable[[bytes], Awaitable[None]]
    ) -> Subscription:
        """Calls `handler` with each core message's payload on `subject` (wildcards allowed).

        Returns once the server has the subscription, so nothing published later is missed.
        """

        async def callback(message: Msg) -> None:  # nats-py requires an async callback
            await handler(message.data)

        subscription = await self.nc.subscribe(subject, cb=callback)
        # nats-py 2.16 leaves the SUB in its pending buffer for the flusher task, but flush()
        # writes its PING straight to the socket: the server could answer PONG before it had
        # the subscription, and a message another connection published right after was lost
        # (1 subscription in ~150 under load: a missed cancellation). With the SUB written
        # first, the server answers the PING after it has the subscription.
        await _written(self.nc)
        await self.nc.flush()
        return Subscription(subscription)

    async def has_consumer(self, name: str) -> bool:
        """Whether durable consumer `name` of the event stream exists (False: no stream either)."""
        try:
            await self.js.consumer_info(STREAM, name)
        except NotFoundError:
            return False
        return True

    async def consumer_position(self, name: str) -> ConsumerPosition | None:
        """Ack floor, unacknowledged count and deliveries of durable `name` (None: none)."""
        return await consumer_position(self.js, name)

    async def consumer_counts(self, names: Sequence[str]) -> dict[str, ConsumerCounts]:
        """Pending and unacknowledged counts of the named durable consumers that exist.

        Raises BusUnavailable when NATS cannot be asked (each question waits at most 2 s).
        """
        return await consumer_counts(self.js, list(names))

    async def stream_bounds(self) -> tuple[int, int]:
        """(first, last) sequence held by the event stream; (1, 0) when it does not exist yet."""
        return await stream_bounds(self.js)

    async def open_reader(self, prefix: str, sequence: int) -> StreamReader:
        """An in-order reader of the stream from `sequence` (StreamMissing: no stream yet)."""
        return await StreamReader.open(self.js, prefix, sequence)

    async def delete_consumer(self, name: str) -> None:
        """Deletes consumer `name` of the event stream if it exists (best effort)."""
        await delete_consumer(self.js, name)

    async def stored(self, sequence: int) -> bytes:
        """The payload of the event stream's message `sequence`."""
        return (await self.js.get_msg(STREAM, seq=sequence)).data or b""


class Subscription:
    """A core NATS subscription; `close` ends it."""

    def __init__(self, subscription: _NatsSubscription) -> None:
        self._subscription = subscription

    async def close(self) -> None:
        """Stops delivering messages to the handler."""
        await self._subscription.unsubscribe()


async def _written(nc: Client) -> None:
    """Returns once nats-py's flusher task has written the commands queued so far (or 10 s)."""
    # The flusher serves its queue in order: our turn comes after everything queued before.
    # Bounded because a connection closed meanwhile never serves it; nats-py swallows the
    # cancellation, so a timeout just returns, and the flush() after it reports the trouble.
    await asyncio.wait_for(nc._flush_pending(force_flush=True), FLUSH_SECONDS)


async def connect(url: str, name: str, *, connect_timeout: float = 5.0) -> Bus:
    """Connects to NATS (reconnecting for ever after the first success, with backoff)."""
    watch = _ConnectionWatch(name)
    nc = HeaderClient()  # nats.connect() with a faster header parse (bus/headers.py)
    await nc.connect(
        # A cluster's servers, comma-separated, each with the role's credentials: the servers
        # a cluster advertises carry none, so only listed ones can be reconnected to.
        servers=[part.strip() for part in url.split(",") if part.strip()],
        name=name,
        error_cb=watch.on_error,
        disconnected_cb=watch.on_disconnected,
        reconnected_cb=watch.on_reconnected,
        # nats-py annotates these seconds as int (nats.connect() hid it); it waits on floats.
        connect_timeout=connect_timeout,  # type: ignore[arg-type]
        max_reconnect_attempts=-1,
        allow_reconnect=True,
        # Between first-connect attempts (later ones: next_server).
        reconnect_time_wait=0.5,  # type: ignore[arg-type]
        reconnect_to_server_handler=watch.next_server,
    )
    watch.nc = nc
    if name in _UNREACHABLE:
        _UNREACHABLE.discard(name)
        log.warning("NATS (%s) reachable again", name)
    return Bus(nc, nc.jetstream())


# Names whose first connect keeps failing, said once per process until one gets through: the
# API's readiness probe opens a connection per request, and must not warn at every probe.
_UNREACHABLE: set[str] = set()
# How the server's going away reaches error_cb, just before disconnected_cb says so.
_GONE = (nats.errors.UnexpectedEOF, nats.errors.StaleConnectionError, ConnectionResetError)


class _ConnectionWatch:
    """Logs a NATS connection's changes of state once each, and paces its reconnects."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.nc: Client | None = None
        self.outage = Outage(f"NATS ({name})", log)

    async def on_error(self, error: Exception) -> None:
        if self.nc is None:  # the first connect, retried until the server is there
            if self.name not in _UNREACHABLE:
                _UNREACHABLE.add(self.name)
                log.warning("NATS (%s) unreachable (%s); retrying", self.name, error)
            return
        if self.outage.lost or isinstance(error, _GONE):  # said once, by on_disconnected
            log.debug("NATS (%s): %r", self.name, error)
            return
        log.warning("NATS (%s): %s", self.name, error)

    async def on_disconnected(self) -> None:
        if self.nc is not None and self.nc.is_closed:
            return  # our own close, not an outage
        self.outage.failed("disconnected")

    async def on_reconnected(self) -> None:
        self.outage.restored()

    def next_server(
        self, servers: list[Server], info: dict[str, Any]
    ) -> tuple[Server | None, float]:
        """nats-py's reconnect hook: the server to try, after a delay that doubles to 5 s."""
        # The server that failed least often: nats-py shuffles its pool once per disconnect, so
        # always taking the first one retried a dead cluster node for ever in 1 of 3 cases.
        server = min(servers, key=lambda s: s.reconnects) if servers else None
        attempts = server.reconnects if server is not None else 0
        if not self.outage.lost:
            self.outage.failed("disconnected")
        return server, backoff(attempts)


def stream_config(replicas: int = 1, max_age: float | None = None) -> StreamConfig:
    """The event stream: every event kept (LIMITS, up to `max_age`), de-duplicated by id."""
    return StreamConfig(
        name=STREAM,
        subjects=[ALL_SUBJECTS],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        num_replicas=replicas,
        max_age=max_age or 0.0,  # 0: no limit (nats-py sends seconds as nanoseconds)
    )


async def ensure_stream(
    js: JetStreamContext, replicas: int = 1, max_age: float | None = None
) -> None:
    """Creates the event stream, or brings an existing one's config up to date."""
    config = stream_config(replicas, max_age)
    try:
        await js.stream_info(STREAM)
    except NotFoundError:
        await js.add_stream(config)
    else:
        await js.update_stream(config)
