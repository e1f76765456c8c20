"""`EncodedResponse` (api/encoded.py) answers exactly what Litestar's Response answers.

Each probe route is served twice through the real app `create_app` builds, with its middleware
(trace, metrics, Vary): once answering a Response, once an EncodedResponse of the same content,
status and headers. The ASGI messages sent must be equal byte for byte (the traceresponse aside,
which is new per request), including where EncodedResponse hands the work back to Litestar.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec
import pytest
from litestar import Response, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import Cookie, ResponseHeader

from agenttasks.api.app import create_app
from agenttasks.api.auth import mint_token
from agenttasks.api.deps import ApiConfig, ApiDeps
from agenttasks.api.encoded import EncodedResponse, _Prepared

SECRET = "e" * 40


class Nested(msgspec.Struct):
    when: datetime
    amount: Decimal | None
    tags: list[str]


class Content(msgspec.Struct):
    id: UUID
    title: str
    config: dict[str, Any]
    nested: Nested
    nothing: None = None


CONTENT = Content(
    id=UUID("12345678-1234-5678-1234-567812345678"),
    title='Ünïcödé \u2028 "quoted" </script>',
    config={"content": "x" * 50, "n": [1, 2.5, True, None], "deep": {"a": {"b": "c"}}},
    nested=Nested(datetime(2026, 12, 1, 21, 30, 0, 123456, tzinfo=UTC), Decimal("0.0042"), ["a"]),
)
HEADERS = {
    "X-Position": "42",
    "RateLimit-Limit": "120",
    "RateLimit-Remaining": "119",
    "RateLimit-Reset": "31",
    "RateLimit-Policy": "120;w=60",
}


def kinds(answer: type[Response[Any]]) -> list[Any]:
    """The probe routes, each answering with `answer`."""

    @post("/probe/created/", status_code=201)
    async def created() -> Response[Content]:
        return answer(CONTENT, status_code=201, headers=HEADERS)

    @post("/probe/repeated/", status_code=201)
    async def repeated() -> Response[Content]:
        return answer(CONTENT, status_code=200, headers={"X-Position": "7"})

    @post("/probe/bare/", status_code=201)
    async def bare() -> Response[dict[str, Any]]:
        return answer({"a": 1})

    @post("/probe/own-type/", status_code=201)
    async def own_type() -> Response[dict[str, Any]]:
        return answer({"a": 1}, headers={"Content-Type": "application/json; x=1", "Vary": "A"})

    @post("/probe/cookie/", status_code=201)
    async def cookie() -> Response[dict[str, Any]]:
        return answer({"a": 1}, cookies=[Cookie(key="k", value="v")])

    @post("/probe/background/", status_code=201)
    async def background() -> Response[dict[str, Any]]:
        return answer({"a": 1}, background=BackgroundTask(asyncio.sleep, 0))

    @post("/probe/empty/", status_code=204)
    async def empty() -> Response[None]:
        return answer(None, status_code=204)

    @post("/probe/text/", status_code=201)
    async def text() -> Response[str]:
        return answer("plain", media_type="text/plain")

    return [created, repeated, bare, own_type, cookie, background, empty, text]


PATHS = ["created", "repeated", "bare", "own-type", "cookie", "background", "empty", "text"]


@asynccontextmanager
async def no_deps() -> AsyncIterator[ApiDeps]:
    yield ApiDeps.__new__(ApiDeps)  # the probes read nothing from it


async def sent(app: Any, path: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    token = mint_token(SECRET, "alice")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"/probe/{path}/",
        "raw_path": f"/probe/{path}/".encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/json"),
            (b"origin", b"http://elsewhere.example"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    await app(scope, receive, send)
    for message in messages:  # the trace id is new per request: compare its presence only
        if message["type"] == "http.response.start":
            message["headers"] = [
                (name, b"<trace>" if name == b"traceresponse" else value)
                for name, value in message["headers"]
            ]
    return messages


async def answers(answer: type[Response[Any]]) -> dict[str, list[dict[str, Any]]]:
    app = create_app(
        ApiConfig(jwt_secret=SECRET, extra_route_handlers=tuple(kinds(answer))), no_deps
    )
    async with app.lifespan():
        return {path: await sent(app, path) for path in PATHS}


@pytest.fixture(scope="module")
def both() -> tuple[dict[str, Any], dict[str, Any]]:
    return asyncio.run(answers(Response)), asyncio.run(answers(EncodedResponse))


@pytest.mark.parametrize("path", PATHS)
def test_the_messages_sent_are_litestars_byte_for_byte(
    both: tuple[dict[str, Any], dict[str, Any]], path: str
) -> None:
    litestars, ours = both
    assert ours[path] == litestars[path]
    start = ours[path][0]
    assert start["type"] == "http.response.start"
    assert (b"traceresponse", b"<trace>") in start["headers"]


def test_the_direct_path_is_taken_for_a_plain_json_answer_and_only_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[str] = []
    original = _Prepared.__init__

    def counting(self: _Prepared, *args: Any) -> None:
        built.append("direct")
        original(self, *args)

    monkeypatch.setattr(_Prepared, "__init__", counting)
    messages = asyncio.run(answers(EncodedResponse))
    # created, repeated, bare and own-type are plain JSON; the other four fall back.
    assert built == ["direct"] * 4
    statuses = {path: messages[path][0]["status"] for path in PATHS}
    assert statuses["created"] == 201
    assert statuses["repeated"] == 200
    assert statuses["empty"] == 204


@pytest.mark.parametrize(
    "arguments",
    [
        {},
        {"status_code": 201, "headers": HEADERS},
        {"headers": {}, "encoding": "latin-1", "media_type": "application/json"},
        {"headers": [ResponseHeader(name="X-A", value="1")]},  # not a dict: Response's own
        {"cookies": {"k": "v"}},
        {"cookies": [Cookie(key="k", value="v")], "type_encoders": {Decimal: str}},
    ],
)
def test_the_constructor_leaves_what_responses_constructor_leaves(
    arguments: dict[str, Any],
) -> None:
    theirs, ours = Response(CONTENT, **arguments), EncodedResponse(CONTENT, **arguments)
    for slot in Response.__slots__:
        assert getattr(ours, slot) == getattr(theirs, slot), slot
