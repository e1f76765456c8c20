"""Tokens: only well-formed, unexpired HS256 tokens signed with our secret get in."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from agenttasks.api.auth import InvalidToken, mint_token, token_from, verify_token
from agenttasks.application.tasks import Actor

SECRET = "a-secret-that-is-long-enough-for-hs256-and-even-for-hs512-tokens!"


def encode(claims: dict[str, object], key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def later(seconds: int = 3600) -> int:
    return int(time.time()) + seconds


def unsigned(claims: dict[str, object]) -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def test_a_minted_token_speaks_for_its_user_and_role() -> None:
    assert verify_token(SECRET, mint_token(SECRET, "alice")) == Actor("alice", is_admin=False)
    assert verify_token(SECRET, mint_token(SECRET, "root", admin=True)) == Actor(
        "root", is_admin=True
    )


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (encode({"sub": "alice", "exp": later(-10)}), "expired"),
        (
            encode({"sub": "alice", "exp": later()}, key="another-secret-also-long-enough!!"),
            "not valid",
        ),
        (unsigned({"sub": "alice", "exp": later()}), "not valid"),
        (encode({"sub": "alice", "exp": later()}, algorithm="HS512"), "not valid"),
        (encode({"sub": "alice"}), "`exp`"),
        (encode({"exp": later()}), "`sub`"),
        (encode({"sub": "", "exp": later()}), "sub"),
        (encode({"sub": "al\x00ice", "exp": later()}), "printable"),
        (encode({"sub": "a" * 201, "exp": later()}), "at most 200"),
        ("not-a-token", "not valid"),
        ("", "not valid"),
    ],
    # Named, not derived from the tokens: their `exp` is the clock's, and pytest-xdist's workers
    # must collect the same test ids.
    ids=[
        "expired",
        "other-key",
        "alg-none",
        "hs512",
        "no-exp",
        "no-sub",
        "empty-sub",
        "nul-in-sub",
        "long-sub",
        "malformed",
        "empty",
    ],
)
def test_a_bad_token_is_refused_with_the_reason(token: str, reason: str) -> None:
    with pytest.raises(InvalidToken) as refused:
        verify_token(SECRET, token)
    assert reason in str(refused.value.detail)
    assert refused.value.status_code == 401


def test_the_roles_claim_must_contain_admin_to_make_an_admin() -> None:
    token = encode({"sub": "eve", "exp": later(), "roles": "admin"})  # a string, not a list
    assert verify_token(SECRET, token) == Actor("eve", is_admin=False)


def test_the_token_is_found_in_the_header_then_the_query_then_the_cookie() -> None:
    cookies = {"agenttasks_token": "c"}
    assert token_from({"authorization": "Bearer h"}, "q", cookies) == ("h", "header")
    assert token_from({}, "q", cookies) == ("q", "query")
    assert token_from({}, None, cookies) == ("c", "cookie")
    with pytest.raises(InvalidToken, match="authentication required"):
        token_from({}, None, {})
    with pytest.raises(InvalidToken, match="Bearer"):
        token_from({"authorization": "Basic abc"}, None, {})


def test_a_short_secret_cannot_mint_tokens() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        mint_token("short", "alice")
