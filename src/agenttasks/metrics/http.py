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
from typing import TYPE_CHECKING, Any, cast

from litestar.enums import ScopeType
from litestar.plugins.prometheus import PrometheusConfig, PrometheusMiddleware
from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Seconds: API answers are milliseconds; read-your-writes waits up to AGENTTASKS_READ_WAIT_MS.
BUCKETS: list[str | float] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
]  # fmt: skip


class BoundedPrometheusMiddleware(PrometheusMiddleware):
    """The plugin's middleware with bounded labels; streams stay out of the histogram."""

    def __init__(self, app: ASGIApp, config: PrometheusConfig) -> None:
        super().__init__(app, config)
        # prometheus_client's `labels()` takes a lock and builds a key on every call (~2% of
        # the API's time per create, PERF12): each label set's children are looked up once.
        # Bounded as the labels are: a closed list of methods, the routes, our statuses.
        self._gauges: dict[tuple[str, str], Gauge] = {}
        self._counters: dict[tuple[str, str, int], tuple[Counter, Counter | None]] = {}
        self._timers: dict[tuple[str, str, int], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Counts the request by method, route and status; times it unless it is a stream."""
        websocket = scope["type"] == ScopeType.WEBSOCKET
        method = "WEBSOCKET" if websocket else cast(str, scope.get("method"))
        key = (method if method in METHODS or websocket else "OTHER", _path_of(scope))
        span: dict[str, Any] = {"start": time.perf_counter(), "duration": 0.0, "status": 200}
        span["stream"] = websocket

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                span["status"] = message["status"]
                headers = dict(message.get("headers") or [])
                content_type = headers.get(b"content-type", b"")
                span["stream"] = content_type.startswith(b"text/event-stream")
            elif message["type"] == "http.response.body":
                span["duration"] = time.perf_counter() - span["start"]
            await send(message)

        in_progress = self._in_progress(key)
        in_progress.inc()
        try:
            await self.app(scope, receive, timed_send)
        finally:
            in_progress.dec()
            count, errors = self._counted(key, span["status"])
            if errors is not None:
                errors.inc()
            count.inc()
            if not span["stream"]:
                self._timer(key, span["status"]).observe(span["duration"])

    def _in_progress(self, key: tuple[str, str]) -> Gauge:
        child = self._gauges.get(key)
        if child is None:
            labels = _labels(*key, 200)
            child = self._gauges[key] = self.requests_in_progress(labels).labels(*key, 200)
        return child

    def _counted(self, key: tuple[str, str], status: int) -> tuple[Counter, Counter | None]:
        found = self._counters.get((*key, status))
        if found is None:
            labels = _labels(*key, status)
            values = [*labels.values()]
            errors = self.requests_error_count(labels).labels(*values) if status >= 500 else None
            found = self._counters[(*key, status)] = (
                self.request_count(labels).labels(*values),
                errors,
            )
        return found

    def _timer(self, key: tuple[str, str], status: int) -> Histogram:
        # Only on a first observation: a child, once made, is a series (streams have none).
        timer = self._timers.get((*key, status))
        if timer is None:
            labels = _labels(*key, status)
            timer = self.request_time(labels).labels(*labels.values())
            self._timers[(*key, status)] = timer
        return timer


def _path_of(scope: Scope) -> str:
    return scope.get("path_template") or "unmatched"


def _labels(method: str, path: str, status: int) -> dict[str, str | int | float]:
    # The metrics are created on first use with these label names, in this order.
    return {"method": method, "path": path, "status_code": status}


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
