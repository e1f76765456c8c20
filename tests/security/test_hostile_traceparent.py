"""A hostile `traceparent` (too long, bad hex, newlines, two of them) is dropped, never echoed.

The middleware is driven over raw ASGI, so even byte strings no HTTP client would send reach
it; the app inside records the trace its log lines and events would get.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agenttasks.observability import context
from agenttasks.observability.http import trace_requests
from agenttasks.observability.traceparent import parse

VALID = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
HOSTILE = [
    VALID + b"-" + b"a" * 10_000,  # oversized
    b"00-" + b"zz" * 16 + b"-00f067aa0ba902b7-01",  # bad hex
    VALID[:20] + b"\r\nSet-Cookie: x=1" + VALID[20:],  # injected newlines
    VALID[:-2] + b"\n1",
    b"\xff\xfe" + VALID[2:],  # not ASCII
    b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01",  # the invalid all-zero trace id
    VALID.upper(),
]


def call(headers: list[tuple[bytes, bytes]]) -> tuple[list[tuple[bytes, bytes]], str]:
    seen: list[str] = []
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        span = context.trace.get()
        assert span is not None
        seen.append(span.trace_id)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": headers}
    asyncio.run(trace_requests(app)(scope, receive, send))
    assert sent[0]["status"] == 200
    return sent[0]["headers"], seen[0]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_traceparent_starts_a_new_trace_and_is_not_echoed(value: bytes) -> None:
    headers, trace_id = call([(b"traceparent", value)])
    answer = dict(headers)[b"traceresponse"]
    assert value not in answer
    assert b"\n" not in answer
    assert b"\r" not in answer
    assert trace_id != "4bf92f3577b34da6a3ce929d0e0e4736"
    fresh = parse(answer)
    assert fresh is not None
    assert fresh.trace_id == trace_id


def test_two_traceparent_headers_are_both_ignored() -> None:
    other = b"00-11111111111111111111111111111111-2222222222222222-01"
    _, trace_id = call([(b"traceparent", VALID), (b"traceparent", other)])
    assert trace_id not in ("4bf92f3577b34da6a3ce929d0e0e4736", "1" * 32)


def test_a_valid_traceparent_is_continued() -> None:
    headers, trace_id = call([(b"traceparent", VALID)])
    assert trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert dict(headers)[b"traceresponse"].startswith(b"00-4bf92f3577b34da6a3ce929d0e0e4736-")
