"""The API's side of tracing: each request continues the caller's trace, or starts one.

An incoming `traceparent` is hostile input: only an exact, valid W3C value is continued (see
traceparent.py); anything else (too long, bad hex, a newline, two headers) is dropped without a
word and a new trace begins. It is never echoed: the answer's `traceresponse` header names the
trace we used, so a caller can find its request in our logs.
"""

from __future__ import annotations

from typing import Any

from agenttasks.observability import context, tracing
from agenttasks.observability.traceparent import TraceContext, continued

HEADER = b"traceparent"
RESPONSE_HEADER = b"traceresponse"

ASGIApp = Any  # (scope, receive, send) -> awaitable; kept loose so no ASGI library is imported


def trace_requests(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: binds the request's trace for its log lines and the events it stores."""

    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await app(scope, receive, send)
            return
        current = request_trace(scope["headers"])

        async def send_traced(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                headers.append((RESPONSE_HEADER, current.header.encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        # The variable set directly, not through context.bound: its generator-based context
        # manager was ~2% of the API's time per create (PERF12). Same effect: set, then reset.
        token = context.trace.set(current)
        try:
            await app(scope, receive, send_traced)
        finally:
            context.trace.reset(token)

    return middleware


def request_trace(headers: list[tuple[bytes, bytes]]) -> TraceContext:
    """The request's span: OpenTelemetry's server span when on, else a child of a valid header."""
    if tracing.enabled():
        from agenttasks.observability import otel  # only imported when OpenTelemetry is on

        if (server := otel.current()) is not None:
            return server
    values = [value for name, value in headers if name.lower() == HEADER]
    return continued(values[0] if len(values) == 1 else None)
