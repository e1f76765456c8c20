"""Read your writes: a handler answers a write once the read model it reads includes it."""

from __future__ import annotations

import logging

from agenttasks.api.deps import ApiDeps
from agenttasks.application.tasks import Actor, Written
from agenttasks.domain.task import Task
from agenttasks.projections.task_queries import TaskView

log = logging.getLogger(__name__)


async def view_after_write(deps: ApiDeps, actor: Actor, written: Written) -> TaskView:
    """The task after this write, answered once the read model includes it (read your writes).

    The answer is the aggregate the command left, which is what the read model now shows. If
    the projector is more than the timeout behind, the answer is still the write's result,
    and the next GET may briefly show the older state.
    """
    if written.position is not None and written.task is not None:
        await caught_up(deps, "tasks", written.position)
        return view_of(written.task)
    view = await deps.queries.get(actor, written.task_id)
    if view is None:
        # An idempotent repeat can arrive before the first request's task is projected.
        return view_of(await deps.run(deps.commands.get, actor, written.task_id))
    return view


async def caught_up(deps: ApiDeps, read_model: str, position: int | None) -> bool:
    """Waits until `read_model` includes `position` (None: nothing to wait for).

    False when it is still behind after the timeout: the caller answers from the events.
    """
    if position is None:
        return True
    if await deps.watcher.wait(read_model, position, deps.read_your_writes_timeout):
        return True
    log.warning("%s read model behind position %s; answering from events", read_model, position)
    return False


def view_of(task: Task) -> TaskView:
    """A task's view built from the aggregate itself."""
    return TaskView(
        id=task.id,
        title=task.title,
        task_type=task.task_type,
        task_config=task.task_config,
        priority=task.priority,
        status=task.status,
        progress=task.progress,
        result_data=task.result_data,
        error_message=task.error_message,
        created_by=task.created_by,
        template_id=task.template_id,
        attempt=task.attempt,
        max_retries=task.max_retries,
        timeout_seconds=task.timeout_seconds,
        created_at=task.created_at,
        started_at=task.started_at,
        completed_at=task.completed_at,
        updated_at=task.updated_at,
    )
