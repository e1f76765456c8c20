"""JWT bearer auth (HS256). The only module that imports PyJWT.

A token is taken from the `Authorization: Bearer` header, or, for browsers' EventSource and
WebSocket (which cannot send headers), from a `token` query parameter or an `agenttasks_token`
cookie. Only HS256 is accepted, so `alg: none` and algorithm-confusion tokens fail verification.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import jwt
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException

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
    return Actor(user, is_admin=isinstance(roles, list) and "admin" in roles)


def token_from(
    headers: Mapping[str, str], query: Mapping[str, str], cookies: Mapping[str, str]
) -> str:
    """The token a request carries, wherever it is; InvalidToken when there is none."""
    header = headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidToken("the Authorization header must be `Bearer <token>`")
        return token.strip()
    found = query.get("token") or cookies.get(COOKIE)
    if not found:
        raise InvalidToken("authentication required: send `Authorization: Bearer <token>`")
    return found


async def current_actor(request: ASGIConnection) -> Actor:  # type: ignore[type-arg]
    """Litestar dependency: the authenticated actor of this request."""
    secret: str = request.app.state.jwt_secret
    token = token_from(request.headers, request.query_params, request.cookies)
    return verify_token(secret, token)
