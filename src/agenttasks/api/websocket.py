"""WebSocket `/ws/tasks/`: the same updates as the SSE streams, with subscriptions per task.

A new connection receives every update of the user's tasks (an admin's: all tasks), live, or
after `?after=<position>`. The first `{"action": "subscribe", "task_id": ..., "after": N}`
narrows it to the tasks subscribed to: the task's history after N (all of it without `after`)
comes first, then `{"type": "subscribed", ...}`, then its live updates. `{"action":
"unsubscribe", "task_id": ...}` stops one. A bad message, or another user's task, gets
`{"type": "error", "message": ...}` and the socket stays open.

One task reads the client's messages into a small inbox and wakes the feed; the handler alone
writes to the socket and changes the subscription, so a subscription's history and its live
updates cannot interleave.

A handshake from a foreign Origin is refused (403) before anything else. A socket counts as
one of the user's open streams (closed with 4429 beyond the cap). History longer than the
catch-up cap is replaced by `{"type": "resync", "position": N, ...}` (with `task_id` for a
subscription): read the current state from the query API; updates go on after N. An update
that finishes a task is sent once the task queries show it (live/settled.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from uuid import UUID

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import HTTPException, WebSocketDisconnect

from agenttasks.api.auth import current_actor
from agenttasks.api.browser import origin_allowed
from agenttasks.api.deps import ApiDeps, Deps
from agenttasks.api.read_your_writes import final_message_gate
from agenttasks.api.schemas import MAX_POSITION
from agenttasks.application.tasks import Actor
from agenttasks.bus.messages import TaskEvent, encode
from agenttasks.live.feed import RESYNC_DETAIL, Feed, FeedClosed, HistoryTooLong
from agenttasks.live.hub import LiveUnavailable
from agenttasks.live.service import LiveUpdates
from agenttasks.live.slots import TooManyStreams

INBOX_LIMIT = 32  # client messages waiting; beyond this the reader stops reading (backpressure)
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_MANY = 4429
CLOSE_TRY_AGAIN_LATER = 1013  # RFC 6455: the server cannot serve the stream just now


class Subscribe(msgspec.Struct, tag_field="action", tag="subscribe", forbid_unknown_fields=True):
    task_id: UUID
    after: int | None = None


class Unsubscribe(
    msgspec.Struct, tag_field="action", tag="unsubscribe", forbid_unknown_fields=True
):
    task_id: UUID


_decoder = msgspec.json.Decoder(Subscribe | Unsubscribe)
_encoder = msgspec.json.Encoder()


@websocket("/ws/tasks/")
async def task_updates_socket(socket: WebSocket[Any, Any, Any], deps: Deps) -> None:
    """Sends task updates as JSON text messages; takes subscribe/unsubscribe messages."""
    if origin_allowed(socket, socket.app.state.cors_origins) is False:
        # Refused at the handshake: another site's page learns nothing, not even why.
        with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
            await socket.close(code=CLOSE_FORBIDDEN)
        return
    try:
        actor = await current_actor(socket)
        after = _after(socket.query_params.get("after"))
    except (HTTPException, ValueError) as error:
        code = 1008
        if isinstance(error, HTTPException):
            code = CLOSE_FORBIDDEN if error.status_code == 403 else CLOSE_UNAUTHORIZED
        await _refuse(socket, code, _detail(error))
        return
    try:
        slot = deps.live.slots.acquire(actor.user_id)
    except TooManyStreams as error:
        await _refuse(socket, CLOSE_TOO_MANY, str(error))
        return
    try:
        async with contextlib.AsyncExitStack() as opened:
            try:
                feed = await opened.enter_async_context(deps.live.feed(actor, None, after))
            except LiveUnavailable as error:
                await _refuse(socket, CLOSE_TRY_AGAIN_LATER, str(error))
                return
            # Accepted once registered: a client that is connected gets everything from then on.
            await socket.accept()
            session = _Session(socket, deps, deps.live, actor, feed)
            with contextlib.suppress(WebSocketDisconnect, OSError, FeedClosed):
                await session.run()
            server_closed = feed.subscriber.closed  # the hub stopped: the server is going away
    finally:
        slot.release()
    with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
        await socket.close(code=1001 if server_closed else 1000)


class _Session:
    def __init__(
        self, socket: WebSocket[Any, Any, Any], deps: ApiDeps, live: LiveUpdates, actor: Actor,
        feed: Feed,
    ) -> None:  # fmt: skip
        self.socket = socket
        self.deps = deps
        self.live = live
        self.actor = actor
        self.feed = feed
        self.inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue(INBOX_LIMIT)
        # Per subscribed task: the last position sent, so live copies of history are skipped.
        self.floors: dict[str, int] = {}
        self.gate = final_message_gate(deps)

    async def run(self) -> None:
        reader = asyncio.create_task(self._read())
        try:
            while True:
                while not self.inbox.empty():
                    message = self.inbox.get_nowait()
                    if message is None:
                        return
                    await self._handle(message)
                try:
                    event = await self.feed.next(self.deps.keepalive_seconds)
                except HistoryTooLong as skipped:
                    await self._send(
                        {"type": "resync", "position": skipped.position, "detail": RESYNC_DETAIL}
                    )
                    continue
                if event is not None and event.position > self.floors.get(event.task_id, 0):
                    await self._send_event(event)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read(self) -> None:
        try:
            while True:
                message = await self.socket.receive()
                if message["type"] != "websocket.receive":
                    break
                await self.inbox.put(message.get("text") or message.get("bytes") or b"")
                self.feed.subscriber.wake()
        except (WebSocketDisconnect, OSError):
            pass
        await self.inbox.put(None)
        self.feed.subscriber.wake()

    async def _handle(self, raw: str | bytes) -> None:
        try:
            command = _decoder.decode(raw)
        except msgspec.DecodeError as error:
            await self._send({"type": "error", "message": f"bad message: {error}"})
            return
        task_id = str(command.task_id)
        if isinstance(command, Unsubscribe):
            await self._unsubscribe(task_id)
            return
        if command.after is not None and not 0 <= command.after <= MAX_POSITION:
            await self._send(
                {"type": "error", "message": f"`after` must be between 0 and {MAX_POSITION}"}
            )
            return
        if await self.deps.queries.get(self.actor, command.task_id) is None:
            await self._send({"type": "error", "message": f"no such task {task_id}"})
            return
        self.live.hub.follow(self.feed.subscriber, task_id)
        after = command.after or 0
        try:
            history = await self.live.history.task_history(command.task_id, after)
        except HistoryTooLong as skipped:
            history, after = [], skipped.position
            await self._send(
                {"type": "resync", "task_id": task_id, "position": after, "detail": RESYNC_DETAIL}
            )
        for event in history:
            await self._send_event(event)
            after = event.position
        self.floors[task_id] = after
        await self._send({"type": "subscribed", "task_id": task_id, "position": after})

    async def _unsubscribe(self, task_id: str) -> None:
        subscriber = self.feed.subscriber
        if subscriber.tasks is None or task_id not in subscriber.tasks:
            message = f"not subscribed to task {task_id}"
            if subscriber.tasks is None:
                message += " (until its first subscribe a connection follows all your tasks)"
            await self._send({"type": "error", "message": message})
            return
        self.live.hub.unfollow(subscriber, task_id)
        self.floors.pop(task_id, None)
        await self._send({"type": "unsubscribed", "task_id": task_id})

    async def _send_event(self, event: TaskEvent) -> None:
        await self.gate.hold(event)  # a finishing update goes once the task queries show it
        await self.socket.send_text(encode(event).decode())

    async def _send(self, message: dict[str, Any]) -> None:
        await self.socket.send_text(_encoder.encode(message).decode())


async def _refuse(socket: WebSocket[Any, Any, Any], code: int, message: str) -> None:
    # Accepted in order to say why: a refused handshake tells a browser nothing.
    with contextlib.suppress(WebSocketDisconnect, OSError):
        await socket.accept()
        await socket.send_text(_encoder.encode({"type": "error", "message": message}).decode())
        await socket.close(code=code, reason=message[:120])


def _after(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise ValueError("`after` must be a position (a non-negative integer)")
    return int(raw)


def _detail(error: Exception) -> str:
    return str(getattr(error, "detail", "") or error)
