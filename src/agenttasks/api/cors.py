"""CORS for pages on other origins (AGENTTASKS_CORS_ORIGINS): the API and its SSE streams.

Browsers ask before a cross-origin request with a JSON body or an Authorization header (the
preflight) and read an answer only when it names their origin. The WebSocket has no CORS: its
handshake's Origin is checked against the same list in api/browser.py.
"""

from __future__ import annotations

from typing import Any, Literal, cast

from litestar.config.cors import CORSConfig
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Method, Receive, Scope, Send

# What a page sends us: the token, a JSON body, an idempotency key, an SSE resume point.
ALLOWED_HEADERS = ["authorization", "content-type", "idempotency-key", "last-event-id"]
ALLOWED_METHODS: list[Method | Literal["*"]] = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"]
# What a page may read from our answers beyond the safelisted ones: X-Position is what it passes
# on as min_position (docs/api.md, Consistency); without it here, fetch shows it as null.
EXPOSED_HEADERS = ["Retry-After", "WWW-Authenticate", "X-Position"]
PREFLIGHT_CACHE_SECONDS = 600


def cors_config(origins: frozenset[str], allow_credentials: bool) -> CORSConfig | None:
    """Litestar's CORS config for `origins` (`*`: any), or None: same origin only."""
    if not origins:
        return None
    if allow_credentials and "*" in origins:
        # Settings refuse this too; a wildcard with credentials would let any site use a cookie.
        raise ValueError("CORS credentials cannot be allowed for every origin (*)")
    if any("*" in origin for origin in origins - {"*"}):
        # Litestar reads `*` inside an origin as a pattern; our other checks match exactly.
        raise ValueError("CORS origins take no wildcard inside an origin (`*` alone: any)")
    return CORSConfig(
        allow_origins=["*"] if "*" in origins else sorted(origins),
        allow_methods=ALLOWED_METHODS,
        allow_headers=ALLOWED_HEADERS,
        allow_credentials=allow_credentials,
        expose_headers=EXPOSED_HEADERS,
        max_age=PREFLIGHT_CACHE_SECONDS,
    )


def vary_on_origin(app: ASGIApp) -> ASGIApp:
    """Middleware: `Vary: Origin` on every answer, those to requests without an Origin too."""

    # Litestar adds it only when it names a listed origin. A browser that cached our own page's
    # copy (no Origin sent, no CORS headers) would hand it to a listed page's CORS request,
    # which then fails: measured with /dashboard/client.js (tests/e2e/test_cross_origin.py).
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return

        async def send_varied(message: Message) -> None:
            if message["type"] == "http.response.start":
                _add_origin_to_vary(message)
            await send(message)

        await app(scope, receive, send_varied)

    return middleware


def _add_origin_to_vary(message: Message) -> None:
    # On the raw header list: Litestar's MutableScopeHeaders decoded and lowered every name
    # at each look-up, ~3% of the API's time per create (APIPATH). Same result: the first
    # Vary header gains Origin unless it names it, the other Vary headers are dropped.
    if "headers" not in message:
        raise ValueError(f"Invalid message type: {message['type']!r}")
    raw = cast(dict[str, Any], message)
    headers: list[tuple[bytes, bytes]] = raw["headers"]
    if not isinstance(headers, list):
        headers = raw["headers"] = list(headers)
    found = [i for i, (name, _) in enumerate(headers) if name.lower() == b"vary"]
    if not found:
        headers.append((b"vary", b"Origin"))
    else:
        value = headers[found[0]][1]
        if b"origin" in value.lower():
            return
        headers[found[0]] = (b"vary", value + b", Origin")
        for index in reversed(found[1:]):
            del headers[index]
