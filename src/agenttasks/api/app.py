"""Builds the Litestar application from its dependencies. No logic of its own."""

from __future__ import annotations

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from agenttasks.api.auth import current_actor
from agenttasks.api.browser import hide_query_token, require_json_body
from agenttasks.api.dashboard import dashboard
from agenttasks.api.deps import ApiDeps
from agenttasks.api.errors import EXCEPTION_HANDLERS
from agenttasks.api.health import health, ready
from agenttasks.api.statistics import task_statistics
from agenttasks.api.streams import all_tasks_stream, task_stream
from agenttasks.api.tasks import TaskController, validate_task_config
from agenttasks.api.templates import EXCEPTION_HANDLERS as TEMPLATE_EXCEPTION_HANDLERS
from agenttasks.api.templates import TemplateController
from agenttasks.api.websocket import task_updates_socket


def create_app(deps: ApiDeps) -> Litestar:
    """The ASGI application serving the API with `deps`."""

    async def provide_deps() -> ApiDeps:
        return deps

    async def on_startup() -> None:
        for hook in deps.on_startup:
            await hook()

    async def on_shutdown() -> None:
        for hook in deps.on_shutdown:
            await hook()
        deps.executor.shutdown(wait=False)

    return Litestar(
        route_handlers=[
            TaskController,
            validate_task_config,
            TemplateController,
            task_statistics,
            task_stream,
            all_tasks_stream,
            task_updates_socket,
            health,
            ready,
            dashboard,
            *deps.extra_route_handlers,
        ],
        dependencies={
            "deps": Provide(provide_deps),
            "actor": Provide(current_actor),
        },
        exception_handlers={**EXCEPTION_HANDLERS, **TEMPLATE_EXCEPTION_HANDLERS},
        middleware=[hide_query_token],
        guards=[require_json_body],
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        state=State({"jwt_secret": deps.jwt_secret, "cors_origins": deps.cors_origins}),
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
    )
