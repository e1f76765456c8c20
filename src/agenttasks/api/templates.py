"""The template resource: thin handlers, one command or one query each."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT
from msgspec import Meta

from agenttasks.api.budgets import BUDGET_402, within_budget
from agenttasks.api.deps import ApiDeps, CurrentActor, Deps
from agenttasks.api.errors import problem
from agenttasks.api.limits import QUOTA_429, admitted
from agenttasks.api.openapi import QUERY, REPEATED_KEY, WITH_BODY, problems
from agenttasks.api.paging import page_links
from agenttasks.api.read_your_writes import (
    TEMPLATES,
    MinPosition,
    caught_up,
    position_headers,
    reflecting,
    view_after_write,
)
from agenttasks.api.schemas import Body, Priority, TaskType
from agenttasks.api.tasks import IdempotencyKey, PageNumber, PageSize
from agenttasks.application.tasks import MAX_TITLE_CHARS, Actor
from agenttasks.application.templates import (
    NotTemplateOwner,
    TaskFromTemplate,
    TemplateCommands,
    TemplateDraft,
    TemplateNotFound,
    TemplateWritten,
)
from agenttasks.domain.template import MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS, Template
from agenttasks.projections.task_queries import TaskView
from agenttasks.projections.template_queries import (
    TemplateFilter,
    TemplateQueries,
    TemplateView,
    UsageView,
)

TemplateId = FromPath[UUID]
Name = Annotated[str, Meta(min_length=1, max_length=MAX_NAME_CHARS)]
Description = Annotated[str, Meta(max_length=MAX_DESCRIPTION_CHARS)]


class TemplateCreate(Body):
    """POST /ai-task-templates/."""

    name: Name
    task_type: TaskType
    description: Description = ""
    default_config: dict[str, Any] = {}
    config_schema: dict[str, Any] = {}
    shared: bool = False


class TemplateUpdate(Body):
    """PUT /ai-task-templates/{id}/: the fields to change; omitted (or null) ones are kept."""

    name: Name | None = None
    task_type: TaskType | None = None
    description: Description | None = None
    default_config: dict[str, Any] | None = None
    config_schema: dict[str, Any] | None = None
    shared: bool | None = None


class TaskFromTemplateCreate(Body):
    """POST /ai-task-templates/{id}/create_task/ (the body is optional)."""

    task_config: dict[str, Any] = {}  # overrides, deep-merged into the template's defaults
    title: Annotated[str, Meta(min_length=1, max_length=MAX_TITLE_CHARS)] | None = None
    priority: Priority = "normal"
    max_retries: Annotated[int, Meta(ge=0, le=10)] = 3
    timeout_seconds: Annotated[int, Meta(ge=1, le=86_400)] = 7200
    # Where the task's end is posted (docs/webhooks.md), as on POST /ai-tasks/.
    webhook_url: Annotated[str, Meta(min_length=1, max_length=8192)] | None = None


class TemplatePage(msgspec.Struct):
    """One page of templates."""

    count: int
    next: str | None
    previous: str | None
    results: list[TemplateView]


class TemplateController(Controller):
    """/api/v1/utils/ai-task-templates/: reusable task definitions, and tasks made from them."""

    path = "/api/v1/utils/ai-task-templates"
    tags = ["templates"]

    @post("/", status_code=HTTP_201_CREATED, responses=problems(*WITH_BODY))
    async def create(
        self, data: JSONBody[TemplateCreate], actor: CurrentActor, deps: Deps
    ) -> Response[TemplateView]:
        """Creates a template; its config_schema and default_config are checked first."""
        draft = TemplateDraft(**msgspec.structs.asdict(data))
        written = await deps.run(_commands(deps).create, actor, draft)
        view = await _view_after_write(deps, actor, written)
        headers = position_headers(written.position)
        return Response(view, status_code=HTTP_201_CREATED, headers=headers)

    @get("/", responses=problems(*QUERY))
    async def list_templates(
        self,
        request: Request[Any, Any, Any],
        actor: CurrentActor,
        deps: Deps,
        task_type: FromQuery[TaskType | None] = None,
        search: Annotated[str | None, QueryParameter(max_length=200)] = None,
        mine: FromQuery[bool] = False,
        archived: FromQuery[bool] = False,
        ordering: FromQuery[str] = "-created_at",
        page: PageNumber = 1,
        page_size: PageSize = 20,
        min_position: MinPosition = None,
    ) -> TemplatePage:
        """The templates the actor may use: their own and shared ones (an admin's: all)."""
        await reflecting(deps, min_position, TEMPLATES)
        found = TemplateFilter(task_type=task_type, search=search, mine=mine, archived=archived)
        count, results = await _queries(deps).page(
            actor, found, ordering, (page - 1) * page_size, page_size
        )
        previous, following = page_links(request, count, page, page_size)
        return TemplatePage(count=count, next=following, previous=previous, results=results)

    @get("/popular/", responses=problems(*QUERY))
    async def popular(
        self,
        actor: CurrentActor,
        deps: Deps,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 10,
        min_position: MinPosition = None,
    ) -> list[TemplateView]:
        """The most used templates the actor may use, most used first."""
        await reflecting(deps, min_position, TEMPLATES)
        return await _queries(deps).popular(actor, limit)

    @get("/{template_id:uuid}/", responses=problems(*QUERY, 404))
    async def retrieve(
        self,
        template_id: TemplateId,
        actor: CurrentActor,
        deps: Deps,
        min_position: MinPosition = None,
    ) -> TemplateView:
        """One template, with its usage figures."""
        await reflecting(deps, min_position, TEMPLATES)
        view = await _queries(deps).get(actor, template_id)
        if view is None:
            raise TemplateNotFound(template_id)
        return view

    @put("/{template_id:uuid}/", responses=problems(*WITH_BODY, 404, 409))
    async def revise(
        self,
        template_id: TemplateId,
        data: JSONBody[TemplateUpdate],
        actor: CurrentActor,
        deps: Deps,
    ) -> Response[TemplateView]:
        """Stores a new version with the given fields (a PUT that changes nothing adds none)."""
        changes = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not None}
        written = await deps.run(_commands(deps).revise, actor, template_id, changes)
        view = await _view_after_write(deps, actor, written)
        return Response(view, headers=position_headers(written.position))

    @delete(
        "/{template_id:uuid}/",
        status_code=HTTP_204_NO_CONTENT,
        responses=problems(*WITH_BODY, 404, 409),
    )
    async def archive(self, template_id: TemplateId, actor: CurrentActor, deps: Deps) -> None:
        """Archives the template: it keeps its history and tasks, and makes no new tasks."""
        written = await deps.run(_commands(deps).archive, actor, template_id)
        await _view_after_write(deps, actor, written)

    @post(
        "/{template_id:uuid}/create_task/",
        status_code=HTTP_201_CREATED,
        responses={
            **REPEATED_KEY,
            **problems(*WITH_BODY, 402, 404, 409, 422, 429, described={**QUOTA_429, **BUDGET_402}),
        },
    )
    async def create_task(
        self,
        template_id: TemplateId,
        actor: CurrentActor,
        deps: Deps,
        data: JSONBody[TaskFromTemplateCreate | None] = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[TaskView]:
        """Creates a task from the template's defaults merged with the given overrides."""
        body = data or TaskFromTemplateCreate()
        if body.webhook_url is not None:  # SSRF guard and length cap (docs/webhooks.md)
            await deps.webhooks.check_url(body.webhook_url)
        request = TaskFromTemplate(**msgspec.structs.asdict(body))
        await within_budget(deps, actor)  # 402 when the user's budget is spent (api/budgets.py)
        written, limit_headers = await admitted(
            deps,
            actor,
            lambda: deps.run(
                _commands(deps).create_task, actor, template_id, request, idempotency_key
            ),
        )
        view = await view_after_write(deps, actor, written)
        status = HTTP_201_CREATED if written.created else HTTP_200_OK
        headers = {**position_headers(written.position), **limit_headers}
        return Response(view, status_code=status, headers=headers)


async def _view_after_write(deps: ApiDeps, actor: Actor, written: TemplateWritten) -> TemplateView:
    """The template after this write, once the read model shows it (read your writes)."""
    if await caught_up(deps, "templates", written.position):
        view = await _queries(deps).get(actor, written.template_id)
        if view is not None:
            return view
    return view_from_aggregate(written.template)


def view_from_aggregate(template: Template) -> TemplateView:
    """A template's view built from the aggregate (usage figures unknown: zero)."""
    return TemplateView(
        id=template.id,
        version=template.revision,
        archived=template.archived,
        owner=template.owner,
        created_at=template.created_at,
        updated_at=template.updated_at,
        usage_count=0,
        usage=UsageView(
            usage_count=0,
            last_used_at=None,
            completed=0,
            failed=0,
            cancelled=0,
            success_rate=None,
            average_duration_seconds=None,
        ),
        **template.definition(),
    )


def _commands(deps: ApiDeps) -> TemplateCommands:
    return deps.templates


def _queries(deps: ApiDeps) -> TemplateQueries:
    return deps.template_queries


def _not_found(_: Request[Any, Any, Any], error: TemplateNotFound) -> Response[dict[str, Any]]:
    return problem(404, "no such template")


def _forbidden(_: Request[Any, Any, Any], error: PermissionError) -> Response[dict[str, Any]]:
    return problem(403, str(error))


EXCEPTION_HANDLERS: dict[int | type[Exception], Any] = {
    TemplateNotFound: _not_found,
    NotTemplateOwner: _forbidden,
    PermissionError: _forbidden,
}
