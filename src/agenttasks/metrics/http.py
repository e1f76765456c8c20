"""HTTP metrics through Litestar's Prometheus middleware, with labels that stay bounded.

The plugin's own labels take the request's method as sent and, without `group_path`, the raw
path: a task id per series, and any token a client invents as a method. Here the path is the
route's template (`/api/v1/utils/ai-tasks/{task_id:uuid}/`; unmatched paths never reach a
route's middleware), the method one of a closed list, and live streams (SSE answers and
WebSockets) are counted but kept out of the latency histogram: a stream lasts as long as its
client stays, which would drown every request's latency.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from litestar.connection import Request
from litestar.enums import ScopeType
from litestar.plugins.prometheus import PrometheusConfig, PrometheusMiddleware

if TYPE_CHECKING:
    from litestar.types import Message, Receive, Scope, Send

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Seconds: API answers are milliseconds; read-your-writes waits up to AGENTTASKS_READ_WAIT_MS.
BUCKETS: list[str | float] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
]  # fmt: skip


class BoundedPrometheusMiddleware(PrometheusMiddleware):
    """The plugin's middleware with bounded labels; streams stay out of the histogram."""

    def _get_default_labels(self, request: Request[Any, Any, Any]) -> dict[str, str | int | float]:
        websocket = str(request.scope["type"]) == ScopeType.WEBSOCKET.value
        method = "WEBSOCKET" if websocket else request.method
        return {
            "method": method if method in METHODS or websocket else "OTHER",
            "path": request.scope.get("path_template") or "unmatched",
            "status_code": 200,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Counts the request by method, route and status; times it unless it is a stream."""
        request = Request[Any, Any, Any](scope, receive)
        labels = self._get_default_labels(request)
        span: dict[str, Any] = {"start": time.perf_counter(), "duration": 0.0, "status": 200}
        span["stream"] = scope["type"] == ScopeType.WEBSOCKET

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                span["status"] = message["status"]
                headers = dict(message.get("headers") or [])
                content_type = headers.get(b"content-type", b"")
                span["stream"] = content_type.startswith(b"text/event-stream")
            elif message["type"] == "http.response.body":
                span["duration"] = time.perf_counter() - span["start"]
            await send(message)

        in_progress = self.requests_in_progress(labels).labels(*labels.values())
        in_progress.inc()
        try:
            await self.app(scope, receive, timed_send)
        finally:
            in_progress.dec()
            labels["status_code"] = span["status"]
            values = [*labels.values()]
            if span["status"] >= 500:
                self.requests_error_count(labels).labels(*values).inc()
            self.request_count(labels).labels(*values).inc()
            if not span["stream"]:
                self.request_time(labels).labels(*values).observe(span["duration"])


def http_metrics_config() -> PrometheusConfig:
    """The middleware's configuration: agenttasks_http_* metrics, bounded labels."""
    return PrometheusConfig(
        app_name="agenttasks",
        prefix="agenttasks_http",
        buckets=BUCKETS,
        group_path=True,
        middleware_class=BoundedPrometheusMiddleware,
        exclude=["^/metrics$"],  # a scrape is not traffic
    )
