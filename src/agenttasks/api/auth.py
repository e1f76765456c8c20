"""JWT bearer auth (HS256). The only module that imports PyJWT.

A token is taken from the `Authorization: Bearer` header, or, for browsers' EventSource and
WebSocket (which cannot send headers), from a `token` query parameter or an `agenttasks_token`
cookie. Only HS256 is accepted, so `alg: none` and algorithm-confusion tokens fail verification.

A browser attaches the cookie to requests any page makes, so the cookie is honoured only where
it cannot change anything (GET, HEAD, the WebSocket handshake) and only from an allowed page;
a query token changes something only with a JSON body from an allowed page (api/browser.py).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

import jwt
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException

from agenttasks.api.browser import from_allowed_page, is_json, is_state_changing, query_token
from agenttasks.application.tasks import Actor

ALGORITHM = "HS256"
COOKIE = "agenttasks_token"
MIN_SECRET_BYTES = 32


class InvalidToken(NotAuthorizedException):
    """401: the request carries no usable token; the detail says why."""


def mint_token(secret: str, user: str, *, admin: bool = False, ttl: int = 86_400) -> str:
    """A signed token for `user`, valid for `ttl` seconds."""
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"the JWT secret must be at least {MIN_SECRET_BYTES} bytes long")
    if not user.strip():
        raise ValueError("the user id must not be empty")
    if ttl <= 0:
        raise ValueError("the time to live must be a positive number of seconds")
    now = int(time.time())
    claims = {"sub": user, "iat": now, "exp": now + ttl, "roles": ["admin"] if admin else []}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


MAX_USER_CHARS = 200


def verify_token(secret: str, token: str) -> Actor:
    """The actor a token speaks for; InvalidToken when it is expired, forged or malformed."""
    return _verified(secret, token)[0]


def _verified(secret: str, token: str) -> tuple[Actor, float]:
    # The actor and the token's expiry (seconds since the epoch).
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("the token has expired") from None
    except jwt.MissingRequiredClaimError as error:
        raise InvalidToken(f"the token lacks the `{error.claim}` claim") from None
    except jwt.InvalidTokenError:
        raise InvalidToken("the token is not valid (bad signature, algorithm or format)") from None
    user, roles = claims.get("sub"), claims.get("roles", [])
    if not isinstance(user, str) or not user:
        raise InvalidToken("the token's `sub` claim must be a non-empty string")
    if len(user) > MAX_USER_CHARS or not user.isprintable():
        # The user id is stored in events and read models; Postgres text cannot hold NUL.
        raise InvalidToken(
            f"the token's `sub` claim must be printable and at most {MAX_USER_CHARS} characters"
        )
    actor = Actor(user, is_admin=isinstance(roles, list) and "admin" in roles)
    return actor, float(claims["exp"])  # PyJWT checked that it is a number


# Longer tokens are verified every time rather than kept: the cache's memory stays bounded.
MAX_CACHED_TOKEN_CHARS = 2048


class TokenCache:
    """Tokens already verified, by their exact text, until their expiry: a repeat skips the
    signature and claim checks (~5% of the API's time per create, measured with py-spy).

    Only a token that passed `verify_token` is kept, so a forged or altered one (any byte
    differs) is never found; a kept one is refused once its `exp` has passed. At most `size`
    are kept, the least recently used dropped first; size 0 keeps none.
    """

    def __init__(self, size: int, clock: Callable[[], float] = time.time) -> None:
        self.size = size
        self._clock = clock
        self._verified: OrderedDict[str, tuple[Actor, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._verified)

    def actor(self, secret: str, token: str) -> Actor:
        """The actor of `token`, from the cache or verified now; InvalidToken like verify_token."""
        kept = self._verified.get(token)
        if kept is not None:
            actor, expires = kept
            if self._clock() < expires:
                self._verified.move_to_end(token)
                return actor
            del self._verified[token]  # expired: verify_token says so in its own words
        actor, expires = _verified(secret, token)
        if self.size > 0 and len(token) <= MAX_CACHED_TOKEN_CHARS:
            self._verified[token] = (actor, expires)
            if len(self._verified) > self.size:
                self._verified.popitem(last=False)
        return actor


class Credential(NamedTuple):
    """A token and where the request carried it."""

    token: str
    source: Literal["header", "query", "cookie"]


def token_from(
    headers: Mapping[str, str], query: str | None, cookies: Mapping[str, str]
) -> Credential:
    """The token a request carries, wherever it is; InvalidToken when there is none."""
    header = headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidToken("the Authorization header must be `Bearer <token>`")
        return Credential(token.strip(), "header")
    if query:
        return Credential(query, "query")
    if cookie := cookies.get(COOKIE):
        return Credential(cookie, "cookie")
    raise InvalidToken("authentication required: send `Authorization: Bearer <token>`")


def check_browser_rules(
    connection: ASGIConnection[Any, Any, Any, Any], source: str, origins: frozenset[str]
) -> None:
    """Refuses a cookie or query token where another site's page could have made us use it."""
    changes = is_state_changing(connection)
    if source == "cookie":
        if changes:
            raise InvalidToken(
                "the session cookie is accepted only on GET requests and the WebSocket "
                "handshake: send `Authorization: Bearer <token>`"
            )
        if not from_allowed_page(connection, origins):
            raise PermissionDeniedException(
                "the session cookie is accepted only from this service's own pages or an "
                "allowed origin (AGENTTASKS_CORS_ORIGINS): send `Authorization: Bearer <token>`"
            )
    elif source == "query" and changes and not _json_from_allowed_page(connection, origins):
        raise InvalidToken(
            "a token in the query string changes something only with a JSON body from an "
            "allowed page: send `Authorization: Bearer <token>`"
        )


def _json_from_allowed_page(
    connection: ASGIConnection[Any, Any, Any, Any], origins: frozenset[str]
) -> bool:
    # No page can make a browser add a header to another site's request; a query token must
    # come with what a cross-site form cannot send: a JSON body, from an allowed Origin.
    content_type = connection.headers.get("content-type", "")
    return is_json(content_type) and from_allowed_page(connection, origins)


async def current_actor(request: ASGIConnection) -> Actor:  # type: ignore[type-arg]
    """Litestar dependency: the authenticated actor of this request."""
    state = request.app.state
    headers, query = request.headers, query_token(request)
    # The Cookie header is parsed only when it is where the token is: token_from looks at the
    # Authorization header and the query first (~2% of the API's time per create, APIPATH).
    cookies = {} if headers.get("authorization") or query else request.cookies
    credential = token_from(headers, query, cookies)
    check_browser_rules(request, credential.source, state.cors_origins)
    cache: TokenCache | None = state.get("token_cache")
    if cache is None:
        return verify_token(state.jwt_secret, credential.token)
    return cache.actor(state.jwt_secret, credential.token)
