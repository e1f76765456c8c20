"""Builds the Litestar application from its dependencies. No logic of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from litestar import Litestar, Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from agenttasks.api.auth import TokenCache, current_actor
from agenttasks.api.browser import hide_query_token, require_json_body
from agenttasks.api.budgets import EXCEPTION_HANDLERS as BUDGET_EXCEPTION_HANDLERS
from agenttasks.api.budgets import BudgetController
from agenttasks.api.cors import cors_config, vary_on_origin
from agenttasks.api.dashboard import dashboard
from agenttasks.api.deps import ApiConfig, ApiDeps
from agenttasks.api.errors import EXCEPTION_HANDLERS
from agenttasks.api.health import health, ready
from agenttasks.api.limits import EXCEPTION_HANDLERS as LIMIT_EXCEPTION_HANDLERS
from agenttasks.api.limits import LimitsController
from agenttasks.api.metrics import counting_429s, metrics
from agenttasks.api.read_your_writes import EXCEPTION_HANDLERS as READ_EXCEPTION_HANDLERS
from agenttasks.api.statistics import task_statistics
from agenttasks.api.streams import all_tasks_stream, task_stream
from agenttasks.api.tasks import TaskController, validate_task_config
from agenttasks.api.templates import EXCEPTION_HANDLERS as TEMPLATE_EXCEPTION_HANDLERS
from agenttasks.api.templates import TemplateController
from agenttasks.api.webhooks import EXCEPTION_HANDLERS as WEBHOOK_EXCEPTION_HANDLERS
from agenttasks.api.webhooks import WebhookController
from agenttasks.api.websocket import task_updates_socket
from agenttasks.api.workers import workers_view
from agenttasks.application.tasks import Actor
from agenttasks.metrics.http import http_metrics_config
from agenttasks.observability.http import trace_requests

OpenDeps = Callable[[], AbstractAsyncContextManager[ApiDeps]]


def create_app(config: ApiConfig, open_deps: OpenDeps) -> Litestar:
    """The ASGI application; `open_deps()` opens its collaborators for the app's lifetime."""

    # The open collaborators while the lifespan runs. A dependency without parameters skips
    # Litestar's per-request signature parsing: from `state: State` it built a new State, a
    # copy of the app's, for every request (APIPATH).
    opened: list[ApiDeps] = []

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # Opened on the server's own event loop, complete before the first request.
        async with open_deps() as deps:
            app.state.deps = deps
            opened.append(deps)
            try:
                yield
            finally:
                opened.remove(deps)

    def provide_deps() -> ApiDeps:
        return opened[-1]

    async def provide_actor(request: Request, deps: NamedDependency[Any]) -> Actor:  # type: ignore[type-arg]
        # Taking `deps` makes Litestar resolve the two one after the other: two dependencies
        # side by side cost every request an anyio task group (~8% of the API's time per create).
        # Bare types: Litestar checks each argument per request, and a subscripted type such as
        # Request[Any, Any, Any] takes its slow path there (a TypeError caught; APIPATH).
        return await current_actor(request)

    return Litestar(
        route_handlers=[
            TaskController,
            validate_task_config,
            TemplateController,
            WebhookController,
            LimitsController,
            BudgetController,
            task_statistics,
            workers_view,
            task_stream,
            all_tasks_stream,
            task_updates_socket,
            health,
            metrics,
            ready,
            dashboard,
            *config.extra_route_handlers,
        ],
        dependencies={
            "deps": Provide(provide_deps, sync_to_thread=False),
            "actor": Provide(provide_actor),
        },
        exception_handlers=counting_429s(
            {
                **EXCEPTION_HANDLERS,
                **TEMPLATE_EXCEPTION_HANDLERS,
                **READ_EXCEPTION_HANDLERS,
                **WEBHOOK_EXCEPTION_HANDLERS,
                **LIMIT_EXCEPTION_HANDLERS,
                **BUDGET_EXCEPTION_HANDLERS,
            }
        ),
        # trace_requests first: every later middleware's and handler's lines name the trace.
        middleware=[
            trace_requests,
            http_metrics_config().middleware,
            hide_query_token,
            vary_on_origin,
        ],
        plugins=list(config.plugins),
        before_request=require_json_body,  # 415 for a body not declared JSON (api/browser.py)
        lifespan=[lifespan],
        state=State(
            {
                "jwt_secret": config.jwt_secret,
                "cors_origins": config.cors_origins,
                "token_cache": TokenCache(config.token_cache_size),
            }
        ),
        cors_config=cors_config(config.cors_origins, config.cors_allow_credentials),
        openapi_config=OpenAPIConfig(
            title="agenttasks",
            version="0.1.0",
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
                }
            ),
            security=[{"bearer": []}],
        ),
        debug=False,
        # Litestar's default would replace the root handler the role set up (JSON or text).
        logging_config=None,
    )
