"""A `*` inside an origin (`https://*`, `https://*.example.com`) is refused at start; every
answer varies on Origin.

Litestar's CORSConfig reads `*` inside an origin as a wildcard, so `https://*` reflected every
https page's origin, with `Access-Control-Allow-Credentials: true` when that was on: the guard
against `*` with credentials did not see it. The cookie and WebSocket checks (exact match) read
it as a literal, so the two layers disagreed. Only the bare `*` means "any origin".

Litestar sent `Vary: Origin` only on answers naming a listed origin: a browser that cached the
service's own copy of a file (no Origin sent) handed it to a listed page, whose CORS check then
failed (tests/e2e/test_cross_origin.py shows it with /dashboard/client.js).
"""

from __future__ import annotations

import pytest
from litestar import Litestar, Response, get
from litestar.testing import TestClient

from agenttasks.api.cors import cors_config, vary_on_origin
from agenttasks.settings import Settings, SettingsError

WILDCARDS_INSIDE = ["https://*", "https://*.example.com", "http://localhost:*", "http://*:5173"]


@pytest.mark.parametrize("origin", WILDCARDS_INSIDE)
@pytest.mark.parametrize("credentials", ["true", "false"])
def test_a_wildcard_inside_an_origin_is_refused_with_our_message(
    origin: str, credentials: str
) -> None:
    env = {"AGENTTASKS_CORS_ORIGINS": f"http://localhost:5173,{origin}",
           "AGENTTASKS_CORS_ALLOW_CREDENTIALS": credentials}  # fmt: skip
    with pytest.raises(SettingsError, match="no wildcard inside an origin") as refused:
        Settings.from_env(env)
    assert repr(origin) in str(refused.value)


@pytest.mark.parametrize("origin", WILDCARDS_INSIDE)
def test_the_cors_config_never_turns_a_listed_origin_into_a_pattern(origin: str) -> None:
    with pytest.raises(ValueError, match="no wildcard inside an origin"):
        cors_config(frozenset({"http://localhost:5173", origin}), allow_credentials=False)


def test_listed_origins_match_exactly() -> None:
    config = cors_config(frozenset({"https://app.example.com"}), allow_credentials=True)
    assert config is not None
    assert config.is_origin_allowed("https://app.example.com")
    for other in ("https://evil.example", "https://app.example.com.evil.example",
                  "https://appxexample.com", "http://app.example.com"):  # fmt: skip
        assert not config.is_origin_allowed(other), other


@get("/plain")
async def plain() -> str:
    return "x"


@get("/varied")
async def varied() -> Response[str]:
    return Response("x", headers={"Vary": "Accept-Encoding"})


@pytest.mark.parametrize("origin", [None, "http://localhost:5173", "https://evil.example"])
def test_every_answer_varies_on_origin(origin: str | None) -> None:
    app = Litestar(
        [plain, varied],
        middleware=[vary_on_origin],
        cors_config=cors_config(frozenset({"http://localhost:5173"}), allow_credentials=False),
    )
    headers = {} if origin is None else {"Origin": origin}
    with TestClient(app) as client:
        for path in ("/plain", "/varied"):
            answer = client.get(path, headers=headers)
            assert answer.status_code == 200
            vary = [v.strip().lower() for v in answer.headers["vary"].split(",")]
            assert "origin" in vary, (path, answer.headers)
