"""What the OpenAPI document says about errors and streams, in one place.

Every error is an RFC 9457 problem document (api/errors.py), so every operation documents its
errors as one `Problem` schema under `application/problem+json`, for the statuses it can
answer. Litestar lists only the success and a 400 of its own shape; the route decorators take
their error responses from `problems(...)` here instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example, OpenAPIMediaType, Operation, Reference, Schema
from litestar.openapi.spec.enums import OpenAPIType

from agenttasks.api.errors import PROBLEM_JSON
from agenttasks.api.schemas import Readiness
from agenttasks.bus.messages import TaskEvent
from agenttasks.projections.task_queries import TaskView

EVENT_STREAM = "text/event-stream"


class Problem(msgspec.Struct, kw_only=True):
    """An RFC 9457 problem document: the body of every error the API answers."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str  # what was wrong, in our words (never a library's text)
    errors: list[str] | msgspec.UnsetType = msgspec.UNSET  # a 400's every problem, one by one
    position: int | msgspec.UnsetType = msgspec.UNSET  # a 503's position not reached yet


class ReadinessProblem(Problem, kw_only=True):
    """/ready's 503: a problem document carrying the readiness report beside it."""

    ready: bool
    checks: dict[str, dict[str, Any]]


MEANINGS = {
    400: "The request is invalid: `detail` says what, `errors` (when present) lists each fault",
    401: "No valid token: send `Authorization: Bearer <token>` (the cookie only on GET)",
    403: "Not allowed: the token's user may not do this, or the cookie came from another site",
    404: "No such item, or not one this user may see (the two are never told apart)",
    409: "Refused by the item's rules in its current state (`detail` gives the reason), or "
    "its stored history cannot be read",
    413: "The request body is over the size limit",
    415: "A request body not declared JSON (`Content-Type: application/json`)",
    422: "The Idempotency-Key was first used with a different request (another endpoint or body)",
    429: "Too many streams open for this user (AGENTTASKS_MAX_STREAMS_PER_USER)",
    500: "An unexpected error: logged, nothing of it revealed",
    503: "A read model has not reached `min_position` within the wait: ask again after "
    "Retry-After seconds",
}
# What any authenticated operation can answer (400: its parameters); bodies add 413 and 415.
AUTHENTICATED = (400, 401, 403, 500)
WITH_BODY = (*AUTHENTICATED, 413, 415)
QUERY = (*AUTHENTICATED, 503)  # a query with `min_position` (api/read_your_writes.py)


def problems(*statuses: int, described: Mapping[int, str] | None = None) -> dict[int, ResponseSpec]:
    """Error responses for `statuses`: a Problem as problem+json each, with its meaning."""
    meanings = {**MEANINGS, **(described or {})}
    return {
        status: ResponseSpec(
            data_container=Problem,
            media_type=PROBLEM_JSON,
            description=meanings[status],
            generate_examples=False,
        )
        for status in sorted(set(statuses))
    }


SSE_DESCRIPTION = (
    "A stream of server-sent events (text/event-stream), one message per task update: "
    "`id:` the update's position (send it back as `Last-Event-ID` to resume), `data:` the "
    "TaskEvent as JSON, no `event:` name (so `EventSource.onmessage` fires). A resume point "
    "too far back gets one `event: resync` message instead of the history, its `data:` a "
    "JSON object `{type: resync, position, detail}`. Idle streams carry `: keep-alive` "
    "comments. OpenAPI 3.1 cannot type an event stream: the schema describes one parsed "
    "message ({event, id, data}, with `data`'s JSON given by `contentSchema`), the example "
    "shows the wire format."
)
SSE_EXAMPLE = (
    'id: 42\r\ndata: {"stream":"task","position":42,'
    '"task_id":"6f1c2a4e-9b0d-4c3e-8f5a-2d7b1e0c9a31","type":"progress",'
    '"version":3,"timestamp":"2026-12-01T08:00:00Z","user":"alice","task_type":"summary",'
    '"priority":"normal","update_type":"progress","status":"running","progress":50,'
    '"message":"halfway","data":{}}\r\n\r\n'
    ": keep-alive\r\n\r\n"
)
_RESYNC_DATA = Schema(
    type=OpenAPIType.OBJECT,
    required=["type", "position", "detail"],
    properties={
        "type": Schema(const="resync"),
        "position": Schema(type=OpenAPIType.INTEGER),
        "detail": Schema(type=OpenAPIType.STRING),
    },
)


def _message(event: str, data: Reference | Schema, description: str) -> Schema:
    return Schema(
        type=OpenAPIType.OBJECT,
        description=description,
        required=["event", "data"],
        properties={
            "event": Schema(const=event),
            "id": Schema(type=OpenAPIType.STRING, pattern="^[0-9]+$"),
            "data": Schema(
                type=OpenAPIType.STRING,
                content_media_type="application/json",
                content_schema=data,
            ),
        },
    )


def sse_responses() -> dict[int, ResponseSpec]:
    """The 200 of a stream; SseOperation turns its schema into one of a parsed message."""
    # TaskEvent as the data container registers it among the components for contentSchema.
    return {
        200: ResponseSpec(
            data_container=TaskEvent,
            media_type=EVENT_STREAM,
            description=SSE_DESCRIPTION,
            generate_examples=False,
        )
    }


def stream_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """A stream's responses: the event stream, and its errors (429 past the streams cap)."""
    return {**sse_responses(), **problems(*AUTHENTICATED, 429, *statuses)}


@dataclass
class SseOperation(Operation):
    """A stream's operation: its 200 documents one SSE message, whose `data` is the JSON."""

    def __post_init__(self) -> None:
        response = (self.responses or {}).get("200")
        content = getattr(response, "content", None) or {}
        media = content.get(EVENT_STREAM)
        if not isinstance(media, OpenAPIMediaType) or media.schema is None:
            return
        task_event = media.schema  # the Reference to the TaskEvent component
        message = Schema(
            one_of=[
                _message("message", task_event, "A task update (no `event:` line on the wire)"),
                _message("resync", _RESYNC_DATA, "History was skipped up to `id`"),
            ]
        )
        content[EVENT_STREAM] = replace(
            media, schema=message, example=None, examples={"stream": Example(value=SSE_EXAMPLE)}
        )


READY_RESPONSES = {
    200: ResponseSpec(
        data_container=Readiness,
        description="Ready: every check passed (each check's report under `checks`)",
        generate_examples=False,
    ),
    **problems(500),
    503: ResponseSpec(
        data_container=ReadinessProblem,
        media_type=PROBLEM_JSON,
        description="Not ready: a problem document whose `checks` say which check failed",
        generate_examples=False,
    ),
}

# A create repeated with its Idempotency-Key and the same request answers the first task.
REPEATED_KEY = {
    200: ResponseSpec(
        data_container=TaskView,
        description="The same request again with the same Idempotency-Key: the first task",
        generate_examples=False,
    )
}
