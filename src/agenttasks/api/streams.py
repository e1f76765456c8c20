"""Server-sent events for one task: its history, then every update live, then the end.

Each update is a plain SSE message (no `event:` name, so `EventSource.onmessage` fires) with
`id:` the event's position and `data:` the bus payload as JSON. A client resumes with the
`Last-Event-ID` header (EventSource sends it on reconnect) or `?after=`. After an update that
finishes the task (completed, failed, cancelled) the stream ends; a task retried later is
followed by connecting again with Last-Event-ID.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from litestar import get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from agenttasks.api.deps import CurrentActor, Deps, TaskId
from agenttasks.application.tasks import TaskNotFound
from agenttasks.bus.live import Lagging, task_events
from agenttasks.bus.messages import TaskEvent, encode
from agenttasks.domain.rules import FINISHED

LastEventId = Annotated[
    str | None, HeaderParameter(name="Last-Event-ID", pattern=r"^[0-9]{1,18}$", required=False)
]
After = Annotated[int | None, QueryParameter(ge=0)]


@get(
    "/api/v1/utils/tasks/{task_id:uuid}/stream/",
    tags=["live"],
    media_type="text/event-stream",
    responses={
        200: ResponseSpec(
            data_container=TaskEvent,
            media_type="text/event-stream",
            description="Server-sent events; each message's `data:` is one TaskEvent as JSON",
            generate_examples=False,
        )
    },
)
async def task_stream(
    task_id: TaskId,
    actor: CurrentActor,
    deps: Deps,
    last_event_id: LastEventId = None,
    after: After = None,
) -> ServerSentEvent:
    """Streams the task's updates (history, then live) as server-sent events."""
    if deps.bus is None or await deps.queries.get(actor, task_id) is None:
        raise TaskNotFound(task_id)
    start = int(last_event_id) if last_event_id is not None else (after or 0)
    return ServerSentEvent(_messages(deps, str(task_id), start))


async def _messages(deps: Deps, task_id: str, after: int) -> AsyncIterator[ServerSentEventMessage]:
    assert deps.bus is not None
    async with task_events(deps.bus, task_id, after) as queue:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), deps.keepalive_seconds)
            except TimeoutError:
                # A comment frame: keeps proxies from closing an idle stream and shows a
                # vanished client sooner (the write fails), without a message in the browser.
                yield ServerSentEventMessage(comment="keep-alive", data=None)
                continue
            if isinstance(item, Lagging):
                return
            event: TaskEvent = item
            yield ServerSentEventMessage(id=event.position, data=encode(event).decode())
            if event.status in FINISHED:
                return
