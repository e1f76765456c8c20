"""CORS for pages on other origins (AGENTTASKS_CORS_ORIGINS): the API and its SSE streams.

Browsers ask before a cross-origin request with a JSON body or an Authorization header (the
preflight) and read an answer only when it names their origin. The WebSocket has no CORS: its
handshake's Origin is checked against the same list in api/browser.py.
"""

from __future__ import annotations

from typing import Literal

from litestar.config.cors import CORSConfig
from litestar.types import Method

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
