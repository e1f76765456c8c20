"""The API's per-request layers after APIPATH's cuts refuse what they refused before.

The JSON-body check became a before_request hook (it was a guard): it still answers 415 before
the token, the body or any dependency is read, on every state-changing route. The Cookie header
is parsed only when neither the Authorization header nor the query carries the token: a cookie
never wins over them, and a POST with only the cookie is still refused. `Vary` is edited on the
raw header list. The deps come from the open lifespan: a restarted app serves the new ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Response, get, post
from litestar.params import JSONBody
from litestar.testing import AsyncTestClient

from agenttasks.api.app import create_app
from agenttasks.api.auth import COOKIE, mint_token
from agenttasks.api.deps import ApiConfig, ApiDeps, CurrentActor, Deps
from agenttasks.api.schemas import TaskCreate

SECRET = "k" * 40
TASK = {"title": "t", "task_type": "summary", "task_config": {"content": "x"}}
calls: list[str] = []


@post("/probe/create/", status_code=201)
async def probe_create(
    data: JSONBody[TaskCreate], actor: CurrentActor, deps: Deps
) -> dict[str, Any]:
    calls.append(actor.user_id)
    return {"user": actor.user_id, "deps": id(deps)}


@get("/probe/who/")
async def probe_who(actor: CurrentActor, deps: Deps) -> Response[dict[str, Any]]:
    return Response({"user": actor.user_id, "deps": id(deps)}, headers={"Vary": "Accept"})


def app_with(*deps: ApiDeps) -> Any:
    opened = iter(deps)

    @asynccontextmanager
    async def open_deps() -> AsyncIterator[ApiDeps]:
        yield next(opened)

    config = ApiConfig(jwt_secret=SECRET, extra_route_handlers=(probe_create, probe_who))
    return create_app(config, open_deps)


def new_deps() -> ApiDeps:
    return ApiDeps.__new__(ApiDeps)  # the probes read nothing from it


def bearer(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(SECRET, user)}"}


async def test_a_body_not_declared_json_is_415_before_the_token_or_the_body_is_read() -> None:
    calls.clear()
    async with AsyncTestClient(app_with(new_deps())) as client:
        for headers in ({}, {"Authorization": "Bearer not-a-token"}, bearer("alice")):
            answer = await client.post(
                "/probe/create/",
                content=b"{not json",
                headers={**headers, "Content-Type": "text/plain"},
            )
            assert answer.status_code == 415, answer.text
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert "Content-Type: application/json" in answer.json()["detail"]
        answer = await client.post("/probe/create/", json=TASK, headers=bearer("alice"))
        assert answer.status_code == 201, answer.text
    assert calls == ["alice"]


async def test_the_header_and_the_query_token_win_over_the_cookie_which_never_counts_on_a_post() -> (
    None
):
    calls.clear()
    mallory = mint_token(SECRET, "mallory")
    async with AsyncTestClient(app_with(new_deps())) as client:
        client.cookies.set(COOKIE, mallory)
        answer = await client.get("/probe/who/", headers=bearer("alice"))
        assert answer.json()["user"] == "alice"
        answer = await client.get("/probe/who/", params={"token": mint_token(SECRET, "bob")})
        assert answer.json()["user"] == "bob"
        answer = await client.get("/probe/who/", headers={"Sec-Fetch-Site": "same-origin"})
        assert answer.json()["user"] == "mallory"  # a GET from our own page: the cookie counts
        answer = await client.post("/probe/create/", json=TASK)
        assert answer.status_code == 401, answer.text
        assert "cookie" in answer.json()["detail"]
        client.cookies.set(COOKIE, "garbage")
        answer = await client.get("/probe/who/", headers={"Authorization": "Basic abc"})
        assert answer.status_code == 401  # a malformed header is refused, not passed over
    assert calls == []


async def test_vary_names_origin_once_beside_what_the_handler_varies_on() -> None:
    async with AsyncTestClient(app_with(new_deps())) as client:
        answer = await client.get("/probe/who/", headers=bearer("alice"))
        assert answer.headers.get_list("vary") == ["Accept, Origin"]
        answer = await client.post("/probe/create/", json=TASK, headers=bearer("alice"))
        assert answer.headers.get_list("vary") == ["Origin"]


async def test_a_restarted_app_serves_the_deps_of_its_new_lifespan() -> None:
    first, second = new_deps(), new_deps()
    app = app_with(first, second)
    for deps in (first, second):
        async with AsyncTestClient(app) as client:
            answer = await client.get("/probe/who/", headers=bearer("alice"))
            assert answer.json()["deps"] == id(deps)
