"""Server-sent events: one task's updates, or all of the user's tasks' updates.

Each update is a plain SSE message (no `event:` name, so `EventSource.onmessage` fires) with
`id:` the event's position (global across tasks) and `data:` the bus payload as JSON. A client
resumes with the `Last-Event-ID` header (EventSource sends it on reconnect) or `?after=`.

One task: its history (or what follows the resume point), then live; after an update that
finishes the task (completed, failed, cancelled) the stream ends, and a task retried later is
followed by connecting again with Last-Event-ID.

All tasks: what follows the resume point, then live, for ever; without a resume point it starts
live. An admin's stream carries every user's tasks, as an admin's task list does.

A user holds at most `max_streams_per_user` streams open per API process (429 beyond), and a
resume point further back than `max_catch_up_events` updates gets a `resync` message instead
of the history (docs/api.md). An update that finishes a task is sent once the task queries
show it (live/settled.py), so a client reading the task right after it sees it.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import get
from litestar.params import HeaderParameter, QueryParameter

from agenttasks.api.deps import ApiDeps, CurrentActor, Deps, TaskId
from agenttasks.api.openapi import SseOperation, stream_responses
from agenttasks.api.read_your_writes import final_message_gate
from agenttasks.api.schemas import MAX_POSITION
from agenttasks.api.sse import Ends, EventStream
from agenttasks.application.tasks import Actor, TaskNotFound
from agenttasks.bus.messages import TaskEvent
from agenttasks.domain.rules import FINISHED
from agenttasks.live.service import LiveUpdates

LastEventId = Annotated[
    str | None, HeaderParameter(name="Last-Event-ID", pattern=r"^[0-9]{1,18}$", required=False)
]
After = Annotated[int | None, QueryParameter(ge=0, le=MAX_POSITION)]


@get(
    "/api/v1/utils/tasks/{task_id:uuid}/stream/",
    tags=["live"],
    media_type="text/event-stream",
    responses=stream_responses(404),
    operation_class=SseOperation,
)
async def task_stream(
    task_id: TaskId,
    actor: CurrentActor,
    deps: Deps,
    last_event_id: LastEventId = None,
    after: After = None,
) -> EventStream:
    """Streams one task's updates (history, then live) as server-sent events."""
    if await deps.queries.get(actor, task_id) is None:
        raise TaskNotFound(task_id)
    start = _resume_point(last_event_id, after) or 0
    return _stream(deps.live, deps, actor, task_id, start, _finishes_task)


@get(
    "/api/v1/utils/tasks/stream/",
    tags=["live"],
    media_type="text/event-stream",
    responses=stream_responses(),
    operation_class=SseOperation,
)
async def all_tasks_stream(
    actor: CurrentActor,
    deps: Deps,
    last_event_id: LastEventId = None,
    after: After = None,
) -> EventStream:
    """Streams every update of the user's tasks (an admin's: all tasks) as server-sent events."""
    start = _resume_point(last_event_id, after)
    return _stream(deps.live, deps, actor, None, start, None)


def _stream(
    live: LiveUpdates,
    deps: ApiDeps,
    actor: Actor,
    task_id: UUID | None,
    start: int | None,
    ends: Ends | None,
) -> EventStream:
    slot = live.slots.acquire(actor.user_id)
    gate = final_message_gate(deps)
    return EventStream(
        lambda: live.feed(actor, task_id, start), deps.keepalive_seconds, ends, slot, gate
    )


def _resume_point(last_event_id: str | None, after: int | None) -> int | None:
    return int(last_event_id) if last_event_id is not None else after


def _finishes_task(event: TaskEvent) -> bool:
    return event.status in FINISHED
