"""Issue 11, finding 5: what another site's page can make a browser send, against the real API.

Each test here failed on the code before the change: a cross-site `text/plain` form POST with
the cookie created a task (201), the cookie counted from any Origin and on any method, the
WebSocket took any Origin, and `?token=` was copied into paging links.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from agenttasks.api.auth import mint_token
from agenttasks.servers.nats import EmbeddedNats
from tests.integration.api_client import SECRET, bearer, serving, settings_for
from tests.integration.live_harness import LiveApi, running_live_api
from tests.integration.stack import running_stack
from tests.waiting import wait_until

BASE = "/api/v1/utils"
TASK = {"title": "t", "task_type": "summary", "task_config": {"content": "x"}}
EVIL = "https://evil.example"


@pytest.fixture
async def live(database_url: str, nats_server: EmbeddedNats) -> AsyncIterator[LiveApi]:
    async with running_live_api(database_url, nats_server) as api:
        yield api


def cookie(user: str = "alice") -> dict[str, str]:
    return {"Cookie": f"agenttasks_token={mint_token(SECRET, user)}"}


def own_origin(live: LiveApi) -> str:
    return f"http://127.0.0.1:{live.port}"


async def task_count(live: LiveApi, user: str = "alice") -> int:
    response = await live.client.get(f"{BASE}/ai-tasks/", headers=bearer(user))
    count: int = response.json()["count"]
    return count


async def close_code(socket: ClientConnection) -> int:
    """Reads until the server closes the socket; the close code it sent."""
    try:
        while True:
            await asyncio.wait_for(socket.recv(), 10)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else -1


def assert_problem(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    detail = response.json()["detail"]
    for word in words:
        assert word in detail


async def test_a_cross_site_text_plain_form_post_with_the_cookie_creates_nothing(
    live: LiveApi,
) -> None:
    # What `<form enctype="text/plain" method="post">` on another site sends.
    headers = {**cookie(), "Content-Type": "text/plain", "Origin": EVIL}
    body = '{"title": "t", "task_type": "summary", "task_config": {"content": "x"}, "x": "="}'
    response = await live.client.post(f"{BASE}/ai-tasks/", content=body, headers=headers)
    assert response.status_code in (401, 403, 415), response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await task_count(live) == 0


async def test_the_cookie_never_counts_on_a_state_changing_request(live: LiveApi) -> None:
    # Even with a JSON body from the service's own page: such pages send the header.
    headers = {**cookie(), "Origin": own_origin(live)}
    response = await live.client.post(f"{BASE}/ai-tasks/", json=TASK, headers=headers)
    assert_problem(response, 401, "cookie", "Authorization")
    assert await task_count(live) == 0


async def test_a_non_json_body_is_415_even_with_the_authorization_header(live: LiveApi) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        headers = {**bearer("alice"), "Content-Type": content_type}
        response = await live.client.post(f"{BASE}/ai-tasks/", content=b"{}", headers=headers)
        assert_problem(response, 415, "Content-Type: application/json")
    response = await live.client.post(
        f"{BASE}/ai-tasks/", content=b'{"title": 1}', headers=bearer("alice")
    )  # a body that declares no type at all
    assert_problem(response, 415)
    response = await live.client.post(
        f"{BASE}/ai-tasks/",
        json=TASK,
        headers={**bearer("alice"), "Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 201, response.text


async def test_the_cookie_counts_on_get_only_from_an_allowed_page(live: LiveApi) -> None:
    url = f"{BASE}/ai-tasks/"
    foreign = await live.client.get(url, headers={**cookie(), "Origin": EVIL})
    assert_problem(foreign, 403, "cookie", "AGENTTASKS_CORS_ORIGINS")
    unknown = await live.client.get(url, headers=cookie())  # no Origin, no Sec-Fetch-Site
    assert_problem(unknown, 403)
    cross_site = await live.client.get(url, headers={**cookie(), "Sec-Fetch-Site": "cross-site"})
    assert_problem(cross_site, 403)
    own = await live.client.get(url, headers={**cookie(), "Origin": own_origin(live)})
    assert own.status_code == 200, own.text
    same_origin = await live.client.get(url, headers={**cookie(), "Sec-Fetch-Site": "same-origin"})
    assert same_origin.status_code == 200, same_origin.text


async def test_an_origin_from_the_cors_setting_is_allowed_too(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    app_origin = "https://app.example.com"
    settings = settings_for(database_url, nats_server).with_(cors_origins=frozenset({app_origin}))
    async with (
        running_stack(database_url, nats_server),
        serving(settings) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        allowed = await client.get(f"{BASE}/ai-tasks/", headers={**cookie(), "Origin": app_origin})
        assert allowed.status_code == 200, allowed.text
        refused = await client.get(f"{BASE}/ai-tasks/", headers={**cookie(), "Origin": EVIL})
        assert refused.status_code == 403, refused.text


async def test_a_query_token_changes_something_only_with_json_from_an_allowed_page(
    live: LiveApi,
) -> None:
    url = f"{BASE}/ai-tasks/?token={mint_token(SECRET, 'alice')}"
    no_origin = await live.client.post(url, json=TASK)
    assert_problem(no_origin, 401, "query string")
    foreign = await live.client.post(url, json=TASK, headers={"Origin": EVIL})
    assert_problem(foreign, 401)
    assert await task_count(live) == 0
    own = await live.client.post(url, json=TASK, headers={"Origin": own_origin(live)})
    assert own.status_code == 201, own.text


async def test_the_websocket_refuses_a_foreign_origin_even_with_a_valid_token(
    live: LiveApi,
) -> None:
    url = f"ws://127.0.0.1:{live.port}/ws/tasks/?token={mint_token(SECRET, 'alice')}"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, origin=EVIL):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403
    assert live.subscribers() == 0
    async with connect(url, origin=own_origin(live)) as socket:  # type: ignore[arg-type]
        await wait_until(lambda: live.subscribers() == 1)
        await socket.close()


async def test_the_websocket_takes_the_cookie_only_with_an_allowed_origin(live: LiveApi) -> None:
    url = f"ws://127.0.0.1:{live.port}/ws/tasks/"
    async with connect(url, additional_headers=cookie()) as socket:  # no Origin: not a page
        code = await close_code(socket)
    assert code == 4403
    assert live.subscribers() == 0


async def test_paging_links_never_carry_the_query_token(live: LiveApi) -> None:
    for _ in range(3):
        await live.new_task("alice")
    token = mint_token(SECRET, "alice")
    response = await live.client.get(
        f"{BASE}/ai-tasks/", params={"token": token, "page": 2, "page_size": 1}
    )
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["next"] is not None
    assert page["previous"] is not None
    for link in (page["next"], page["previous"]):
        assert token not in link
        assert "token" not in link
        assert "page_size=1" in link


CLIENT_LOGGERS = ("httpx", "httpcore", "websockets.client")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(CLIENT_LOGGERS):  # the test's own clients log their URLs
            self.lines.append(record.getMessage())


async def test_a_query_token_reaches_no_access_log_or_log_line(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    import uvicorn

    from agenttasks.bootstrap import api_app
    from tests.conftest import free_port

    async with running_stack(database_url, nats_server):
        app = api_app(settings_for(database_url, nats_server))
        port = free_port()
        # The access log on (as an operator might run it), at info, like uvicorn's default.
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info")
        collect = _Collect()
        for name in ("uvicorn.access", "uvicorn.error", ""):
            logging.getLogger(name).addHandler(collect)
        server = uvicorn.Server(config)
        serve = asyncio.create_task(server.serve())
        try:
            await wait_until(lambda: server.started)
            token = mint_token(SECRET, "alice")
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                listed = await client.get(f"{BASE}/ai-tasks/", params={"token": token})
                assert listed.status_code == 200
                stream_url = f"{BASE}/tasks/stream/?token={token}"
                async with client.stream("GET", stream_url) as stream:
                    assert stream.status_code == 200
            async with connect(f"ws://127.0.0.1:{port}/ws/tasks/?token={token}") as socket:
                await socket.close()
            await wait_until(lambda: any("WebSocket /ws/tasks" in line for line in collect.lines))
            await wait_until(
                lambda: any("GET /api/v1/utils/tasks/stream" in s for s in collect.lines)
            )
        finally:
            server.should_exit = True
            await serve
            for name in ("uvicorn.access", "uvicorn.error", ""):
                logging.getLogger(name).removeHandler(collect)
    assert any("GET /api/v1/utils/ai-tasks" in line for line in collect.lines)  # the log is on
    leaked: list[Any] = [line for line in collect.lines if token in line]
    assert leaked == []
