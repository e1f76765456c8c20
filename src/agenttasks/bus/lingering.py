"""A pull consumer's fetches through one lingering pull request, its messages taken by a callback.

nats-py's `fetch` sends a pull request per call and takes every message, and the status that
ends the request, through `next_msg`: two asyncio tasks, a uuid and a timer per message, and
three turns of the event loop before the caller runs. An idle worker's fetch returned a task's
message only after the server's "no more messages" status behind it, and each message cost a
pull request and its answer (nats-server's CPU per message at small batches, PERF10).

Here a request asks for up to `batch` messages and stays open until its `expires` (at least a
second, whatever the fetch's wait) or until it has delivered them all; its messages go to a
subscription callback, into a buffer, and a fetch returns as soon as the buffer holds one. The
next fetch takes what the same request delivered meanwhile before asking for more. What can
arrive ahead of the caller is bounded by the open request's batch, as with nats-py (plus a
message of an expired request, in a race). Each request has its own reply subject, where its
ending status comes, so a late status of an old request ends nothing newer.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import Header

# Statuses that end a pull request in the ordinary way: it expired, or nothing was there.
_ENDED = frozenset({"404", "408"})
_HEARTBEAT = "100"
# A request lives at least this long, across fetches: asked for with a fetch's last moments as
# its expiry, it would end at once and be asked for again, in a loop.
_REQUEST_SECONDS = 1.0
# Past its expiry a request is given this long for its ending status before it is given up.
_GRACE_SECONDS = 0.1


class PullEnded(RuntimeError):
    """The server ended a pull request with an error status (consumer gone, limits)."""


class LingeringPull:
    """Fetches of one durable pull consumer through one open pull request at a time."""

    def __init__(self, nc: Client, api_prefix: str, stream: str, consumer: str) -> None:
        self._nc = nc
        self._next = f"{api_prefix}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._inbox = nc.new_inbox()
        self._subscription: Subscription | None = None
        self._buffer: collections.deque[Msg] = collections.deque()
        self._requests = 0  # the number in the newest request's reply subject
        self._credit = 0  # messages the open request may still deliver
        self._open_until = 0.0  # monotonic: after this the open request is over
        self._error: str | None = None  # the status that ended the open request badly
        self._arrived = asyncio.Event()

    async def open(self) -> LingeringPull:
        """Subscribes the reply subjects (before any request is sent)."""
        self._subscription = await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_message)
        return self

    async def fetch(self, batch: int, wait: float) -> list[Msg]:
        """Up to `batch` messages, waiting at most `wait` seconds for the first."""
        deadline = time.monotonic() + wait
        while not self._buffer:
            if self._error is not None:
                error, self._error = self._error, None
                raise PullEnded(error)
            now = time.monotonic()
            if now >= deadline:
                return []
            if now >= self._open_until or self._credit <= 0:
                await self._request(batch, max(deadline - now, _REQUEST_SECONDS))
            self._arrived.clear()
            if self._buffer or self._credit <= 0:
                continue  # it came (or the request ended) while the request was being sent
            timeout = min(deadline, self._open_until) - time.monotonic()
            try:
                async with asyncio.timeout(max(0.0, timeout)):
                    await self._arrived.wait()
            except TimeoutError:
                continue
        return [self._buffer.popleft() for _ in range(min(batch, len(self._buffer)))]

    async def close(self) -> None:
        """Stops taking messages (those delivered and not taken are redelivered after ack_wait)."""
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None

    async def _request(self, batch: int, expires: float) -> None:
        self._requests += 1
        body = msgspec.json.encode({"batch": batch, "expires": int(expires * 1e9)})
        self._credit = batch
        self._open_until = time.monotonic() + expires + _GRACE_SECONDS
        await self._nc.publish(self._next, body, reply=f"{self._inbox}.{self._requests}")

    async def _on_message(self, message: Msg) -> None:
        headers: dict[str, Any] | None = message.headers
        status = headers.get(Header.STATUS) if headers else None
        if not status:
            # A message names its stream subject, not the request it answers: counted against
            # the open one (one of an expired request only makes the next request come sooner).
            self._buffer.append(message)
            self._credit -= 1
            self._arrived.set()
            return
        if status == _HEARTBEAT or message.subject != f"{self._inbox}.{self._requests}":
            return  # an old request's end: the open one goes on
        self._credit = 0  # the request is over: the next fetch asks again
        if status not in _ENDED:
            description = headers.get(Header.DESCRIPTION, "") if headers else ""
            self._error = f"pull request ended: {status} {description}".strip()
        self._arrived.set()
