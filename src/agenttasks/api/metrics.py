"""`GET /metrics` on the API port: this process's instruments, then the system-wide figures.

Unauthenticated unless `AGENTTASKS_METRICS_TOKEN` is set (then `Authorization: Bearer
<token>`): the figures hold no user ids and no user content, only closed-set labels, but they
tell anyone who can reach the API port how busy the service is. The scrape cache bounds what
a scraper costs Postgres either way (metrics/system.py).
"""

from __future__ import annotations

import hmac
import inspect
from collections.abc import Mapping
from typing import Any

from litestar import Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from agenttasks.api.deps import Deps
from agenttasks.api.errors import problem
from agenttasks.metrics.process import rate_limited
from agenttasks.metrics.system import exposition


@get("/metrics", include_in_schema=False)
async def metrics(request: Request[Any, Any, Any], deps: Deps) -> Response[Any]:
    """Prometheus text: per-process instruments, then the system-wide families (cached)."""
    endpoint = deps.metrics
    if endpoint is not None and endpoint.token is not None:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {endpoint.token}".encode()):
            return problem(
                401, "the metrics need `Authorization: Bearer <AGENTTASKS_METRICS_TOKEN>`"
            )
    body = generate_latest(REGISTRY)
    if endpoint is not None:
        body += exposition(await endpoint.system.families())
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def counting_429s(
    handlers: Mapping[int | type[Exception], Any],
) -> dict[int | type[Exception], Any]:
    """The same exception handlers; each 429 they answer is counted (rate_limited_requests)."""

    def count(response: Response[Any], error: Any) -> Response[Any]:
        if response.status_code == 429:
            rate_limited(str(getattr(error, "which", "streams")))
        return response

    def counted(handler: Any) -> Any:
        if inspect.iscoroutinefunction(handler):

            async def answer_later(request: Request[Any, Any, Any], error: Any) -> Response[Any]:
                return count(await handler(request, error), error)

            return answer_later

        def answer(request: Request[Any, Any, Any], error: Any) -> Response[Any]:
            return count(handler(request, error), error)

        return answer

    return {kind: counted(handler) for kind, handler in handlers.items()}
