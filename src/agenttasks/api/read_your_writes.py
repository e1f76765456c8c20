"""Causal reads: an answer reflects every position the client has seen (docs/api.md, Consistency).

A write is answered once the read model it reads includes it (read your writes); a query given
`?min_position=N` waits, bounded, until the read models it reads include N; a stream holds a
message that finishes a task until the task queries show it. One wait underlies all three:
the ProjectionWatcher's, capped by `AGENTTASKS_READ_WAIT_MS`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from litestar import Request, Response
from litestar.params import QueryParameter

from agenttasks.api.deps import ApiDeps
from agenttasks.api.errors import problem
from agenttasks.api.schemas import MAX_POSITION
from agenttasks.application.prices import format_usd
from agenttasks.application.tasks import Actor, Written
from agenttasks.domain.task import Task
from agenttasks.live.settled import FinalMessageGate
from agenttasks.projections.task_queries import TaskView, token_counts

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1
MinPosition = Annotated[
    int | None,
    QueryParameter(
        ge=0,
        le=MAX_POSITION,
        required=False,
        description=(
            "Answer only once this endpoint's read models include this position (a `position` "
            "from a write's `X-Position` header or a live message); 503 with Retry-After when "
            "they do not within AGENTTASKS_READ_WAIT_MS"
        ),
    ),
]

# Read models per query endpoint: what `min_position` waits for.
TASKS = ("tasks",)
TEMPLATES = ("templates", "template_usage")  # a template's view carries its usage figures
STATISTICS = ("statistics",)
EVENT_STORE: tuple[str, ...] = ()  # the audit trail reads the store: it holds every position


class ReadModelBehind(Exception):
    """Read models have not reached a query's `min_position` within the wait (503)."""

    def __init__(self, read_models: tuple[str, ...], position: int) -> None:
        names = ", ".join(read_models)
        super().__init__(
            f"the read model ({names}) has not reached position {position} yet; "
            f"try again in {RETRY_AFTER_SECONDS} s"
        )
        self.read_models = read_models
        self.position = position


async def reflecting(deps: ApiDeps, position: int | None, read_models: tuple[str, ...]) -> None:
    """Returns once every one of `read_models` includes `position` (None: at once).

    ReadModelBehind when one is still behind after the wait; ValueError (400) when no event
    was ever stored at or beyond `position`.
    """
    if position is None or not read_models:
        return
    timeout = deps.read_your_writes_timeout
    reached = await asyncio.gather(
        *(deps.watcher.wait(name, position, timeout) for name in read_models)
    )
    behind = tuple(name for name, ok in zip(read_models, reached, strict=True) if not ok)
    if not behind:
        return
    newest = await deps.run(deps.commands.store.recorder.max_notification_id) or 0
    if position > newest:
        raise ValueError(
            f"query parameter `min_position`: {position} is beyond the newest stored "
            f"position ({newest}); pass a position this service gave you"
        )
    log.warning("%s read model behind min_position %s", ", ".join(behind), position)
    raise ReadModelBehind(behind, position)


def final_message_gate(deps: ApiDeps) -> FinalMessageGate:
    """A stream's gate: an update that finishes a task waits until the task queries show it."""
    return FinalMessageGate(deps.watcher.wait, deps.read_your_writes_timeout, TASKS[0])


def position_headers(position: int | None) -> dict[str, str]:
    """`X-Position` for a write's answer: pass it as `min_position` to any query."""
    return {} if position is None else {"X-Position": str(position)}


def _behind(_: Request[Any, Any, Any], error: ReadModelBehind) -> Response[dict[str, Any]]:
    response = problem(503, str(error), position=error.position)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


EXCEPTION_HANDLERS: dict[int | type[Exception], Any] = {ReadModelBehind: _behind}


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
        error_kind=task.error_kind,
        created_by=task.created_by,
        template_id=task.template_id,
        attempt=task.attempt,
        max_retries=task.max_retries,
        timeout_seconds=task.timeout_seconds,
        created_at=task.created_at,
        started_at=task.started_at,
        completed_at=task.completed_at,
        updated_at=task.updated_at,
        webhook_url=task.webhook_url,
        cost_usd=None if task.cost_usd is None else format_usd(task.cost_usd),
        tokens=token_counts(task.prompt_tokens, task.completion_tokens, task.cached_tokens),
        model_calls=task.model_calls,
        unpriced_calls=task.unpriced_calls,
    )
