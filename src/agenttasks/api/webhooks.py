"""/api/v1/utils/webhooks/: users register endpoints for their tasks' endings (docs/webhooks.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT
from msgspec import Meta

from agenttasks.api.deps import CurrentActor, Deps
from agenttasks.api.errors import problem
from agenttasks.api.openapi import AUTHENTICATED, WITH_BODY, problems
from agenttasks.api.paging import page_links
from agenttasks.api.schemas import Body
from agenttasks.application.webhooks import TooManyWebhooks, WebhookUrlError
from agenttasks.webhooks.service import WebhookNotFound
from agenttasks.webhooks.store import Endpoint

PageNumber = Annotated[int, QueryParameter(ge=1, le=100_000)]
PageSize = Annotated[int, QueryParameter(ge=1, le=100)]
EndpointId = FromPath[UUID]
EventName = Annotated[str, Meta(max_length=50)]


class WebhookCreate(Body):
    """POST /webhooks/: where to send, and which task endings."""

    url: Annotated[str, Meta(min_length=1, max_length=8192)]  # the setting caps it lower
    events: Annotated[list[EventName], Meta(min_length=1, max_length=10)] = msgspec.field(
        default_factory=lambda: ["task.completed", "task.failed", "task.cancelled"]
    )


class WebhookView(msgspec.Struct):
    """A registered endpoint; `secret` only in the answer to its registration."""

    id: UUID
    owner: str
    url: str
    events: list[str]
    status: str  # enabled | disabled
    disabled_reason: str | None
    consecutive_failures: int
    created_at: datetime
    last_success_at: datetime | None
    last_failure_at: datetime | None
    secret: str | None = None


class WebhookPage(msgspec.Struct):
    """One page of endpoints."""

    count: int
    next: str | None
    previous: str | None
    results: list[WebhookView]


class AttemptView(msgspec.Struct):
    """One delivery attempt."""

    delivery_id: int
    webhook_id: str  # the `webhook-id` header: the same on every attempt of a delivery
    event_type: str
    task_id: UUID
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int
    outcome: str  # delivered | retrying | failed
    delivery_status: str  # pending | delivered | failed | cancelled
    next_attempt_at: datetime


class AttemptPage(msgspec.Struct):
    """One page of attempts, newest first."""

    count: int
    next: str | None
    previous: str | None
    results: list[AttemptView]


class TaskUrlSecret(msgspec.Struct):
    """The secret that signs deliveries to the `webhook_url` of the caller's tasks."""

    secret: str


def _view(endpoint: Endpoint, secret: str | None = None) -> WebhookView:
    return WebhookView(**{**endpoint.__dict__, "secret": secret})


def _attempt_page(
    request: Request[Any, Any, Any],
    found: tuple[int, list[dict[str, Any]]],
    page: int,
    page_size: int,
) -> AttemptPage:
    count, rows = found
    previous, following = page_links(request, count, page, page_size)
    return AttemptPage(count, following, previous, [msgspec.convert(r, AttemptView) for r in rows])


class WebhookController(Controller):
    """Register, list, read and remove webhook endpoints; read their delivery attempts."""

    path = "/api/v1/utils/webhooks"
    tags = ["webhooks"]

    @post("/", status_code=HTTP_201_CREATED, responses=problems(*WITH_BODY, 429))
    async def register(
        self, data: JSONBody[WebhookCreate], actor: CurrentActor, deps: Deps
    ) -> WebhookView:
        """Registers an endpoint; the answer holds its signing secret, shown this once."""
        endpoint, secret = await deps.webhooks.register(actor, data.url, data.events)
        return _view(endpoint, secret)

    @get("/", responses=problems(*AUTHENTICATED))
    async def list_webhooks(
        self,
        request: Request[Any, Any, Any],
        actor: CurrentActor,
        deps: Deps,
        page: PageNumber = 1,
        page_size: PageSize = 20,
    ) -> WebhookPage:
        """The caller's endpoints (an admin's: everyone's), oldest first."""
        count, found = await deps.webhooks.list_endpoints(actor, page_size, (page - 1) * page_size)
        previous, following = page_links(request, count, page, page_size)
        return WebhookPage(count, following, previous, [_view(e) for e in found])

    @get("/task-secret/", responses=problems(*AUTHENTICATED))
    async def task_secret(self, actor: CurrentActor, deps: Deps) -> TaskUrlSecret:
        """The secret that signs deliveries to the `webhook_url` of the caller's tasks."""
        return TaskUrlSecret(deps.webhooks.task_url_secret(actor))

    @get("/task-deliveries/", responses=problems(*AUTHENTICATED))
    async def task_deliveries(
        self,
        request: Request[Any, Any, Any],
        task_id: FromQuery[UUID],
        actor: CurrentActor,
        deps: Deps,
        page: PageNumber = 1,
        page_size: PageSize = 20,
    ) -> AttemptPage:
        """Every attempt to deliver to the `webhook_url` of one of the caller's tasks."""
        found = await deps.webhooks.task_attempts(actor, task_id, page_size, (page - 1) * page_size)
        return _attempt_page(request, found, page, page_size)

    @get("/{endpoint_id:uuid}/", responses=problems(*AUTHENTICATED, 404))
    async def get_webhook(
        self, endpoint_id: EndpointId, actor: CurrentActor, deps: Deps
    ) -> WebhookView:
        """One endpoint, with its status (disabled, and why)."""
        return _view(await deps.webhooks.get(actor, endpoint_id))

    @delete(
        "/{endpoint_id:uuid}/",
        status_code=HTTP_204_NO_CONTENT,
        responses=problems(*AUTHENTICATED, 404),
    )
    async def remove(self, endpoint_id: EndpointId, actor: CurrentActor, deps: Deps) -> None:
        """Removes an endpoint, its secret and its deliveries; nothing more is sent to it."""
        await deps.webhooks.remove(actor, endpoint_id)

    @get("/{endpoint_id:uuid}/deliveries/", responses=problems(*AUTHENTICATED, 404))
    async def deliveries(
        self,
        request: Request[Any, Any, Any],
        endpoint_id: EndpointId,
        actor: CurrentActor,
        deps: Deps,
        page: PageNumber = 1,
        page_size: PageSize = 20,
    ) -> AttemptPage:
        """Every attempt to deliver to the endpoint, newest first."""
        found = await deps.webhooks.attempts(actor, endpoint_id, page_size, (page - 1) * page_size)
        return _attempt_page(request, found, page, page_size)


def _refused(_: Request[Any, Any, Any], error: WebhookUrlError) -> Response[dict[str, Any]]:
    return problem(400, str(error))


def _too_many(_: Request[Any, Any, Any], error: TooManyWebhooks) -> Response[dict[str, Any]]:
    return problem(429, str(error))


def _not_found(_: Request[Any, Any, Any], error: WebhookNotFound) -> Response[dict[str, Any]]:
    return problem(404, "no such webhook endpoint")


EXCEPTION_HANDLERS: dict[int | type[Exception], Any] = {
    WebhookUrlError: _refused,
    TooManyWebhooks: _too_many,
    WebhookNotFound: _not_found,
}
