"""What a browser can send on its own: the Origin allow-list, JSON-only bodies, query tokens.

A cookie reaches us from any page that makes the browser send a request; a cross-site form
can POST `text/plain` (which Litestar would parse as JSON). So the cookie counts only on GET,
HEAD and the WebSocket handshake, from an allowed origin (docs/api.md, "Auth"), and a body
that is not declared JSON is refused before anything reads it. A `?token=` is taken out of the
query string before any handler, link or log line can see it.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import unquote_plus

from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
QUERY_TOKEN = "agenttasks.query_token"  # noqa: S105 - the scope key holding a query's token


class UnsupportedMediaType(HTTPException):
    """415: a request body that is not JSON."""

    status_code = 415


def is_state_changing(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """Whether this is an HTTP request that may change something (not GET, HEAD, OPTIONS)."""
    scope = cast(dict[str, Any], connection.scope)
    return scope["type"] == "http" and scope.get("method") not in SAFE_METHODS


def origin_allowed(
    connection: ASGIConnection[Any, Any, Any, Any], extra: frozenset[str]
) -> bool | None:
    """Whether the Origin header names this service or an allowed origin; None without one."""
    origin = connection.headers.get("origin")
    if origin is None:
        return None
    origin = origin.strip().lower().rstrip("/")
    if origin in extra:
        return True
    # The service's own origin is the one the browser addressed: the Host it sent.
    _, sep, netloc = origin.partition("://")
    host = connection.headers.get("host", "").strip().lower()
    return bool(sep and host) and netloc == host


def from_allowed_page(
    connection: ASGIConnection[Any, Any, Any, Any], extra: frozenset[str]
) -> bool:
    """Whether a browser sent this from an allowed page (Origin, or Sec-Fetch-Site without one)."""
    verdict = origin_allowed(connection, extra)
    if verdict is not None:
        return verdict
    # Browsers leave Origin out of same-origin GETs but say where a request comes from here.
    return connection.headers.get("sec-fetch-site") == "same-origin"


def is_json(content_type: str) -> bool:
    """Whether a Content-Type declares JSON (application/json or any +json type)."""
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def require_json_body(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """before_request hook: a state-changing request's body, if any, must be declared JSON
    (415 otherwise)."""
    # A hook, not a guard: Litestar hands every guard a copy() of the route handler, ~4% of
    # the API's time per create (APIPATH). Like a guard it runs once the route and method
    # matched, before the body, the token or any dependency is read; async although it never
    # awaits: a sync one would run in a thread, a hop per request (~6%, PERF12).
    if not is_state_changing(connection):
        return
    content_type = connection.headers.get("content-type")
    if content_type is not None and is_json(content_type):
        return
    length = connection.headers.get("content-length", "0").strip()
    has_body = "transfer-encoding" in connection.headers or length not in ("", "0")
    if content_type is None and not has_body:
        return  # a bodiless POST (retry, cancel without a reason)
    raise UnsupportedMediaType("request bodies must be JSON: send `Content-Type: application/json`")


def query_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The token the request carried in `?token=`, if any (taken out by `hide_query_token`)."""
    token = cast(dict[str, Any], connection.scope).get(QUERY_TOKEN)
    return token if isinstance(token, str) and token else None


def hide_query_token(app: ASGIApp) -> ASGIApp:
    """Middleware: moves `token` out of the query string, so no link or access log shows it."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        raw: bytes = scope.get("query_string", b"")
        if b"token" in raw:
            kept, token = [], None
            for part in raw.split(b"&"):
                key, _, value = part.partition(b"=")
                if key == b"token":
                    token = token or _unquote(value)
                else:
                    kept.append(part)
            # The server's own scope object: its access log reads this same query string.
            mutable = cast(dict[str, Any], scope)
            mutable["query_string"] = b"&".join(kept)
            mutable[QUERY_TOKEN] = token
        await app(scope, receive, send)

    return middleware


def _unquote(value: bytes) -> str:
    return unquote_plus(value.decode("latin-1"))
