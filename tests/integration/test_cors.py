"""CORS (issue 14, item 3): a page on another origin listed in AGENTTASKS_CORS_ORIGINS may call
the API and open its SSE streams; preflights are answered; no other origin is named; `*` never
goes with credentials, and never opens the cookie or the WebSocket to every page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from agenttasks.api.auth import mint_token
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.settings import Settings, SettingsError
from tests.integration.api_client import SECRET, bearer, serving, settings_for
from tests.integration.stack import running_stack

BASE = "/api/v1/utils"
APP = "http://localhost:5173"  # the guide's React dev server
EVIL = "https://evil.example"
TASK = {"title": "t", "task_type": "summary", "task_config": {"content": "x"}}


@asynccontextmanager
async def api_with(
    database_url: str, nats: EmbeddedNats, origins: frozenset[str], credentials: bool = False
) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_for(database_url, nats).with_(
        cors_origins=origins, cors_allow_credentials=credentials
    )
    async with (
        running_stack(database_url, nats),
        serving(settings) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield client


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
    }


async def test_a_listed_origin_gets_preflights_answers_and_sse_named_for_it(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async with api_with(database_url, nats_server, frozenset({APP})) as client:
        asked = await client.options(f"{BASE}/ai-tasks/", headers=preflight(APP))
        assert asked.status_code in (200, 204), asked.text
        assert asked.headers["access-control-allow-origin"] == APP
        assert "POST" in asked.headers["access-control-allow-methods"]
        allowed_headers = asked.headers["access-control-allow-headers"].lower()
        for header in ("authorization", "content-type", "idempotency-key"):
            assert header in allowed_headers
        assert "access-control-allow-credentials" not in asked.headers

        created = await client.post(
            f"{BASE}/ai-tasks/", json=TASK, headers={**bearer("alice"), "Origin": APP}
        )
        assert created.status_code == 201, created.text
        assert created.headers["access-control-allow-origin"] == APP
        assert "origin" in created.headers["vary"].lower()
        task_id = created.json()["id"]
        cancelled = await client.post(
            f"{BASE}/ai-tasks/{task_id}/cancel/", json={}, headers=bearer("alice")
        )
        assert cancelled.status_code == 200, cancelled.text

        # EventSource sends no headers of its own: the token rides in the query.
        token = mint_token(SECRET, "alice")
        url = f"{BASE}/tasks/{task_id}/stream/?token={token}"
        async with client.stream("GET", url, headers={"Origin": APP}) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert stream.headers["access-control-allow-origin"] == APP
            body = b"".join([chunk async for chunk in stream.aiter_bytes()])
        assert b"cancelled" in body

        # An error is readable by the page too (problem details with the CORS headers).
        missing = await client.get(
            f"{BASE}/ai-tasks/00000000-0000-0000-0000-000000000000/",
            headers={**bearer("alice"), "Origin": APP},
        )
        assert missing.status_code == 404
        assert missing.headers["access-control-allow-origin"] == APP


async def test_an_origin_not_listed_is_never_named(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async with api_with(database_url, nats_server, frozenset({APP})) as client:
        asked = await client.options(f"{BASE}/ai-tasks/", headers=preflight(EVIL))
        assert asked.status_code == 400
        assert "access-control-allow-origin" not in asked.headers
        listed = await client.get(f"{BASE}/ai-tasks/", headers={**bearer("a"), "Origin": EVIL})
        assert listed.headers.get("access-control-allow-origin") != EVIL


async def test_without_the_setting_no_cors_headers_are_sent(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async with api_with(database_url, nats_server, frozenset()) as client:
        listed = await client.get(f"{BASE}/ai-tasks/", headers={**bearer("a"), "Origin": APP})
        assert listed.status_code == 200
        assert not [h for h in listed.headers if h.lower().startswith("access-control-")]


async def test_credentials_are_allowed_for_listed_origins_only_when_asked(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async with api_with(database_url, nats_server, frozenset({APP}), credentials=True) as client:
        asked = await client.options(f"{BASE}/ai-tasks/", headers=preflight(APP, "GET"))
        assert asked.headers["access-control-allow-origin"] == APP
        assert asked.headers["access-control-allow-credentials"] == "true"
        cookie = {"Cookie": f"agenttasks_token={mint_token(SECRET, 'alice')}", "Origin": APP}
        listed = await client.get(f"{BASE}/ai-tasks/", headers=cookie)
        assert listed.status_code == 200, listed.text
        assert listed.headers["access-control-allow-credentials"] == "true"


async def test_a_wildcard_opens_the_api_to_any_page_but_not_the_cookie_or_the_websocket(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async with api_with(database_url, nats_server, frozenset({"*"})) as client:
        asked = await client.options(f"{BASE}/ai-tasks/", headers=preflight(EVIL))
        assert asked.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in asked.headers
        listed = await client.get(f"{BASE}/ai-tasks/", headers={**bearer("a"), "Origin": EVIL})
        assert listed.status_code == 200
        assert listed.headers["access-control-allow-origin"] == "*"
        cookie = {"Cookie": f"agenttasks_token={mint_token(SECRET, 'alice')}", "Origin": EVIL}
        refused = await client.get(f"{BASE}/ai-tasks/", headers=cookie)
        assert refused.status_code == 403, refused.text
        socket_url = str(client.base_url).replace("http://", "ws://") + "/ws/tasks/"
        token = mint_token(SECRET, "alice")
        with pytest.raises(InvalidStatus) as refused_socket:
            async with connect(f"{socket_url}?token={token}", origin=EVIL):  # type: ignore[arg-type]
                pass
        assert refused_socket.value.response.status_code == 403


def test_a_wildcard_with_credentials_is_refused_at_start_with_a_clear_message() -> None:
    env = {"AGENTTASKS_CORS_ORIGINS": "*", "AGENTTASKS_CORS_ALLOW_CREDENTIALS": "true"}
    with pytest.raises(SettingsError, match="cannot go with AGENTTASKS_CORS_ORIGINS=\\*"):
        Settings.from_env(env)
    assert Settings.from_env({"AGENTTASKS_CORS_ORIGINS": "*"}).cors_origins == {"*"}
    listed = Settings.from_env(
        {
            "AGENTTASKS_CORS_ORIGINS": f"{APP}, https://App.Example.com/",
            **{"AGENTTASKS_CORS_ALLOW_CREDENTIALS": "true"},
        }
    )
    assert listed.cors_origins == {APP, "https://app.example.com"}
    assert listed.cors_allow_credentials
    with pytest.raises(SettingsError, match="AGENTTASKS_CORS_ALLOW_CREDENTIALS must be true or"):
        Settings.from_env({"AGENTTASKS_CORS_ALLOW_CREDENTIALS": "maybe"})
