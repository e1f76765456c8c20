"""A server-sent events response that writes a feed and releases it the moment the client goes.

Litestar's own SSE response iterates a generator: when the client drops while the generator is
suspended at a `yield`, its cleanup waits for the garbage collector (litestar#3772). Here the
feed is held by a coroutine (`__call__`) whose `finally` always runs, and a small watcher task
ends it as soon as the server reports the disconnect, without waiting for a failed write. The
same `finally` frees the stream's slot (live/slots.py), whatever ended the stream. An update
that finishes a task is sent once the task queries show it (live/settled.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import msgspec
from litestar import Response
from litestar.response.base import ASGIResponse
from litestar.types import Receive, Scope, Send

from agenttasks.bus.messages import TaskEvent, encode
from agenttasks.live.feed import RESYNC_DETAIL, Feed, FeedClosed, HistoryTooLong
from agenttasks.live.hub import RETRY_SECONDS, LiveUnavailable, Subscriber
from agenttasks.live.settled import FinalMessageGate
from agenttasks.live.slots import Slot

KEEP_ALIVE = b": keep-alive\r\n\r\n"
HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}

_END: Any = {"type": "http.response.body", "body": b"", "more_body": False}


async def _refuse_unavailable(send: Send, detail: str) -> None:
    """A 503 problem document in place of the stream, with when to try again."""
    body = msgspec.json.encode(
        {"type": "about:blank", "title": "Service unavailable", "status": 503, "detail": detail}
    )
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(RETRY_SECONDS).encode()),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


FeedOpener = Callable[[], AbstractAsyncContextManager[Feed]]
Ends = Callable[[TaskEvent], bool]


def frame(event: TaskEvent) -> bytes:
    """One SSE message: `id:` the position, `data:` the payload (no `event:`: onmessage fires)."""
    return b"id: %d\r\ndata: %s\r\n\r\n" % (event.position, encode(event))


def resync_frame(position: int) -> bytes:
    """A `resync` message: history up to `position` was skipped; updates go on after it.

    Named, so `onmessage` handlers of TaskEvents never see it; its `id:` makes EventSource
    resume after it.
    """
    body = msgspec.json.encode(
        {
            "type": "resync",
            "position": position,
            "detail": RESYNC_DETAIL,
        }
    )
    return b"id: %d\r\nevent: resync\r\ndata: %s\r\n\r\n" % (position, body)


class EventStream(Response[bytes]):
    """Streams a feed as server-sent events, with keep-alive comments while idle."""

    def __init__(
        self,
        open_feed: FeedOpener,
        keepalive: float,
        ends: Ends | None,
        slot: Slot,
        gate: FinalMessageGate | None = None,
    ) -> None:
        super().__init__(content=b"", media_type="text/event-stream", headers=HEADERS)
        self.open_feed = open_feed
        self.keepalive = keepalive
        self.ends = ends
        self.slot = slot
        self.gate = gate

    def to_asgi_response(self, app: Any, request: Any, **_: Any) -> ASGIResponse:
        """The ASGI response that does the streaming."""
        return _EventStreamBody(self)


class _EventStreamBody(ASGIResponse):
    _should_set_content_length = False

    def __init__(self, stream: EventStream) -> None:
        super().__init__(media_type="text/event-stream", headers=HEADERS)
        self._open_feed = stream.open_feed
        self._keepalive = stream.keepalive
        self._ends = stream.ends
        self._slot = stream.slot
        self._gate = stream.gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._stream(receive, send)
        finally:
            self._slot.release()

    async def _stream(self, receive: Receive, send: Send) -> None:
        # Registered before the headers go out: a client that has the response is sure to
        # get every update committed from then on.
        async with contextlib.AsyncExitStack() as opened:
            try:
                feed = await opened.enter_async_context(self._open_feed())
            except LiveUnavailable as error:
                # Nothing has been sent yet: the client gets a problem document, not a 500.
                await _refuse_unavailable(send, str(error))
                return
            await self.start_response(send)
            watcher = asyncio.create_task(_close_on_disconnect(receive, feed.subscriber))
            try:
                await self._pump(feed, send)
            except FeedClosed:
                pass
            except asyncio.CancelledError:
                # The server is shutting down: end the stream properly, so the client
                # reconnects at once instead of reporting a broken response.
                with contextlib.suppress(Exception):
                    await send(_END)
                raise
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
        await send(_END)

    async def _pump(self, feed: Feed, send: Send) -> None:
        while True:
            try:
                event = await feed.next(self._keepalive)
            except HistoryTooLong as skipped:
                await send(
                    {"type": "http.response.body", "body": resync_frame(skipped.position),
                     "more_body": True}
                )  # fmt: skip
                continue
            if event is not None and self._gate is not None:
                await self._gate.hold(event)  # a finishing update goes once queries show it
            # A comment frame keeps proxies from closing an idle stream, and does not reach
            # the browser as a message.
            body = KEEP_ALIVE if event is None else frame(event)
            await send({"type": "http.response.body", "body": body, "more_body": True})
            if event is not None and self._ends is not None and self._ends(event):
                return


async def _close_on_disconnect(receive: Receive, subscriber: Subscriber) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    subscriber.close()
