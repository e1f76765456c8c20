"""Small helpers the handlers share: answering after a write, and paging links."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from litestar import Request

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
        caught_up = await deps.watcher.wait(
            "tasks", written.position, deps.read_your_writes_timeout
        )
        if not caught_up:
            log.warning("read model behind position %s; answering from events", written.position)
        return view_of(written.task)
    view = await deps.queries.get(actor, written.task_id)
    if view is None:
        # An idempotent repeat can arrive before the first request's task is projected.
        return view_of(await deps.run(deps.commands.get, actor, written.task_id))
    return view


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


def page_links(
    request: Request[Any, Any, Any], count: int, page: int, page_size: int
) -> tuple[str | None, str | None]:
    """(previous, next) absolute URLs with the same query, or None at either end.

    A `token` is never copied: a link is pasted, bookmarked and logged.
    """

    def link(number: int) -> str:
        query = {k: v for k, v in request.query_params.items() if k.lower() != "token"}
        query.update(page=str(number), page_size=str(page_size))
        return str(request.url.with_replacements(query=_encode(query)))

    previous = link(page - 1) if page > 1 and count else None
    following = link(page + 1) if page * page_size < count else None
    return previous, following


def _encode(query: dict[str, str]) -> str:
    return urlencode(query)
