"""The task resource: thin handlers, one command or one query each."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.params import FromQuery, HeaderParameter, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from agenttasks.api.budgets import BUDGET_402, within_budget
from agenttasks.api.deps import ApiDeps, CurrentActor, Deps, TaskId
from agenttasks.api.limits import QUOTA_429, admitted
from agenttasks.api.openapi import AUTHENTICATED, QUERY, REPEATED_KEY, WITH_BODY, problems
from agenttasks.api.paging import page_links
from agenttasks.api.read_your_writes import (
    EVENT_STORE,
    TASKS,
    MinPosition,
    ReadModelBehind,
    position_headers,
    reflecting,
    view_after_write,
)
from agenttasks.api.schemas import (
    MAX_POSITION,
    CancelRequest,
    EventPage,
    EventView,
    Priority,
    Status,
    TaskCreate,
    TaskPage,
    TaskType,
    UpdatePage,
    ValidateConfigRequest,
    ValidateConfigResponse,
)
from agenttasks.application.bus_payloads import event_fields
from agenttasks.application.task_configs import ConfigError, normalized_config
from agenttasks.application.tasks import Actor, NewTask, TaskNotFound, Written
from agenttasks.deletion import Deleter
from agenttasks.domain.updates import KINDS
from agenttasks.projections.task_queries import TaskFilter, TaskView

# Bounded so that (page - 1) * page_size stays a sane OFFSET: beyond it is a 400, never a 500.
MAX_PAGE = 100_000
PageNumber = Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)]
PageSize = Annotated[int, QueryParameter(ge=1, le=100)]
# A task's updates and events come in longer pages: a timeline is read whole, page by page.
HISTORY_PAGE_SIZE = 100
MAX_HISTORY_PAGE_SIZE = 1000
HistoryPageSize = Annotated[int, QueryParameter(ge=1, le=MAX_HISTORY_PAGE_SIZE)]
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key", max_length=200, pattern=r"^[\x21-\x7e]+$", required=False
    ),
]


class TaskController(Controller):
    """/api/v1/utils/ai-tasks/: create, list, read, cancel and retry tasks."""

    path = "/api/v1/utils/ai-tasks"
    tags = ["tasks"]

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        responses={
            **REPEATED_KEY,
            **problems(*WITH_BODY, 402, 409, 422, 429, described={**QUOTA_429, **BUDGET_402}),
        },
    )
    async def create(
        self,
        data: JSONBody[TaskCreate],
        actor: CurrentActor,
        deps: Deps,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[TaskView]:
        """Creates a task; repeating an Idempotency-Key returns the first task (200)."""
        key = idempotency_key
        if data.webhook_url is not None:  # SSRF guard and length cap (docs/webhooks.md)
            await deps.webhooks.check_url(data.webhook_url)
        new = NewTask(
            title=data.title,
            task_type=data.task_type,
            task_config=data.task_config,
            priority=data.priority,
            max_retries=data.max_retries,
            timeout_seconds=data.timeout_seconds,
            webhook_url=data.webhook_url,
        )
        await within_budget(deps, actor)  # 402 when the user's budget is spent (api/budgets.py)
        written, limit_headers = await admitted(deps, actor, lambda: _create(deps, actor, new, key))
        view = await view_after_write(deps, actor, written)
        status = HTTP_201_CREATED if written.created else HTTP_200_OK
        headers = {**position_headers(written.position), **limit_headers}
        return Response(view, status_code=status, headers=headers)

    @get("/", responses=problems(*QUERY))
    async def list_tasks(
        self,
        request: Request[Any, Any, Any],
        actor: CurrentActor,
        deps: Deps,
        status: FromQuery[Status | None] = None,
        task_type: FromQuery[TaskType | None] = None,
        priority: FromQuery[Priority | None] = None,
        search: Annotated[str | None, QueryParameter(max_length=200)] = None,
        ordering: FromQuery[str] = "-created_at",
        page: PageNumber = 1,
        page_size: PageSize = 20,
        min_position: MinPosition = None,
    ) -> TaskPage:
        """Lists the actor's tasks (an admin's: everyone's), filtered, ordered and paged."""
        await reflecting(deps, min_position, TASKS)
        task_filter = TaskFilter(
            status=status, task_type=task_type, priority=priority, search=search
        )
        return await _page(request, actor, deps, task_filter, ordering, page, page_size)

    @get("/active/", responses=problems(*QUERY))
    async def active(
        self,
        request: Request[Any, Any, Any],
        actor: CurrentActor,
        deps: Deps,
        page: PageNumber = 1,
        page_size: PageSize = 20,
        min_position: MinPosition = None,
    ) -> TaskPage:
        """Pending and running tasks, most urgent first."""
        await reflecting(deps, min_position, TASKS)
        task_filter = TaskFilter(statuses=("pending", "running"))
        return await _page(request, actor, deps, task_filter, "-priority", page, page_size)

    @get("/recent/", responses=problems(*QUERY))
    async def recent(
        self,
        request: Request[Any, Any, Any],
        actor: CurrentActor,
        deps: Deps,
        page_size: PageSize = 20,
        min_position: MinPosition = None,
    ) -> TaskPage:
        """The most recently created tasks (page_size of them, 20 by default)."""
        await reflecting(deps, min_position, TASKS)
        return await _page(request, actor, deps, TaskFilter(), "-created_at", 1, page_size)

    @get("/{task_id:uuid}/", responses=problems(*QUERY, 404))
    async def retrieve(
        self, task_id: TaskId, actor: CurrentActor, deps: Deps, min_position: MinPosition = None
    ) -> TaskView:
        """One task."""
        await reflecting(deps, min_position, TASKS)
        view = await deps.queries.get(actor, task_id)
        if view is None:
            raise TaskNotFound(task_id)
        return view

    @post(
        "/{task_id:uuid}/cancel/",
        status_code=HTTP_200_OK,
        responses=problems(*WITH_BODY, 404, 409),
    )
    async def cancel(
        self,
        task_id: TaskId,
        actor: CurrentActor,
        deps: Deps,
        data: JSONBody[CancelRequest | None] = None,
    ) -> Response[TaskView]:
        """Cancels a pending or running task (409 with the reason otherwise)."""
        reason = data.reason if data else ""
        written = await deps.run(deps.commands.cancel, actor, task_id, reason)
        view = await view_after_write(deps, actor, written)
        return Response(view, headers=position_headers(written.position))

    @post(
        "/{task_id:uuid}/retry/",
        status_code=HTTP_200_OK,
        responses=problems(*WITH_BODY, 402, 404, 409, 429, described={**QUOTA_429, **BUDGET_402}),
    )
    async def retry(self, task_id: TaskId, actor: CurrentActor, deps: Deps) -> Response[TaskView]:
        """Retries a failed or cancelled task as a new attempt (409 with the reason otherwise)."""
        # A retry by hand makes the task active again: it counts against active tasks, and it
        # will spend: it needs budget left.
        await within_budget(deps, actor)
        written, _ = await admitted(
            deps, actor, lambda: deps.run(deps.commands.retry, actor, task_id), creation=False
        )
        view = await view_after_write(deps, actor, written)
        return Response(view, headers=position_headers(written.position))

    @delete(
        "/{task_id:uuid}/",
        status_code=HTTP_204_NO_CONTENT,
        responses=problems(*AUTHENTICATED, 404, 409),
    )
    async def delete_task(self, task_id: TaskId, actor: CurrentActor, deps: Deps) -> None:
        """Deletes a finished task for good (409 while it is not finished; docs/api.md)."""
        deleted = await deps.run(Deleter(deps.commands.store).delete, actor, task_id)
        # Gone from the reads too before the answer (a 204 that was slow to show stays a 204).
        with contextlib.suppress(ReadModelBehind):
            await reflecting(deps, deleted.position, TASKS)

    @get("/{task_id:uuid}/updates/", responses=problems(*QUERY, 404))
    async def updates(
        self,
        request: Request[Any, Any, Any],
        task_id: TaskId,
        actor: CurrentActor,
        deps: Deps,
        after: Annotated[int, QueryParameter(ge=0, le=MAX_POSITION)] = 0,
        page: PageNumber = 1,
        page_size: HistoryPageSize = HISTORY_PAGE_SIZE,
        min_position: MinPosition = None,
    ) -> UpdatePage:
        """The task's update history, oldest first (after a position, if given), paged."""
        await reflecting(deps, min_position, TASKS)
        found = await deps.queries.updates(actor, task_id, after, (page - 1) * page_size, page_size)
        if found is None:
            raise TaskNotFound(task_id)
        count, results = found
        previous, following = page_links(request, count, page, page_size)
        return UpdatePage(count=count, next=following, previous=previous, results=results)

    @get("/{task_id:uuid}/events/", responses=problems(*AUTHENTICATED, 404))
    async def events(
        self,
        request: Request[Any, Any, Any],
        task_id: TaskId,
        actor: CurrentActor,
        deps: Deps,
        page: PageNumber = 1,
        page_size: HistoryPageSize = HISTORY_PAGE_SIZE,
        min_position: MinPosition = None,
    ) -> EventPage:
        """The task's stored events, from the event store itself: the audit trail, paged."""
        await reflecting(deps, min_position, EVENT_STORE)  # validated; the store is never behind
        # The store hands over a task's whole history at once; only the page is mapped.
        history = await deps.run(deps.commands.history, actor, task_id)
        start = (page - 1) * page_size
        results = [
            EventView(
                position=item.position,
                version=item.event.originator_version,
                type=KINDS.get(type(item.event), type(item.event).__qualname__),
                timestamp=item.timestamp,
                data=event_fields(item.event),
            )
            for item in history[start : start + page_size]
        ]
        previous, following = page_links(request, len(history), page, page_size)
        return EventPage(count=len(history), next=following, previous=previous, results=results)


@post(
    "/api/v1/utils/validate-task-config/",
    status_code=HTTP_200_OK,
    tags=["tasks"],
    responses=problems(*WITH_BODY, 404),
)
async def validate_task_config(
    data: JSONBody[ValidateConfigRequest], actor: CurrentActor, deps: Deps
) -> ValidateConfigResponse:
    """Checks a task config against its type's rules (and a template's), creating nothing."""
    try:
        if data.template_id is not None:
            templates = deps.templates
            await deps.run(
                templates.task_config, actor, data.template_id, data.task_type, data.task_config
            )
        else:
            normalized_config(data.task_type, data.task_config)
    except ConfigError as error:
        return ValidateConfigResponse(valid=False, errors=error.errors)
    return ValidateConfigResponse(valid=True, errors=[])


async def _create(deps: ApiDeps, actor: Actor, new: NewTask, key: str | None) -> Written:
    """The create's command: on the event loop when the API has a loop committer."""
    if deps.creates is None:  # off Postgres (an in-memory store): through a command thread
        return await deps.run(deps.commands.create, actor, new, key)
    return await deps.commands.create_on_loop(actor, new, key, deps.creates, deps.run)


async def _page(
    request: Request[Any, Any, Any],
    actor: CurrentActor,
    deps: Deps,
    task_filter: TaskFilter,
    ordering: str,
    page: int,
    page_size: int,
) -> TaskPage:
    count, results = await deps.queries.page(
        actor, task_filter, ordering, (page - 1) * page_size, page_size
    )
    previous, following = page_links(request, count, page, page_size)
    return TaskPage(count=count, next=following, previous=previous, results=results)
