"""One task's events from the stream: what already happened, then what happens next.

An ordered JetStream consumer filtered to the task's subjects delivers the stored history and
then live events through one channel, in stream order, so there is no gap and no repeat at the
switch from history to live. Every API replica can serve every stream: nothing comes from
process memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from nats.js.api import DeliverPolicy

from agenttasks.bus.connection import Bus
from agenttasks.bus.messages import STREAM, TaskEvent, decode, task_subject

QUEUE_LIMIT = 10_000  # a client this far behind is cut off rather than allowed to grow memory


class Lagging(RuntimeError):
    """The reader fell too far behind the stream; it should reconnect with Last-Event-ID."""


@asynccontextmanager
async def task_events(bus: Bus, task_id: str, after: int = 0) -> AsyncIterator[asyncio.Queue[Any]]:
    """A queue of the task's events with position > `after` (history first), until closed.

    The queue yields TaskEvent objects, or a Lagging instance if the reader fell behind.
    """
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def deliver(message: Any) -> None:
        event = decode(message.data)
        if not isinstance(event, TaskEvent) or event.position <= after:
            return
        if queue.qsize() >= QUEUE_LIMIT:
            queue.put_nowait(Lagging("the client fell too far behind"))
            return
        queue.put_nowait(event)

    subscription = await bus.js.subscribe(
        task_subject(task_id=task_id),
        stream=STREAM,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
        cb=deliver,
    )
    try:
        yield queue
    finally:
        await subscription.unsubscribe()
