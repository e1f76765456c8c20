"""The API's cache of verified tokens (AGENTTASKS_TOKEN_CACHE_SIZE): bounded, never a way in.

A cached token skips the signature check, so the cache must hold only tokens that passed it,
refuse them once expired, and stay within its size whatever tokens clients send.
"""

from __future__ import annotations

import jwt
import pytest

from agenttasks.api.auth import MAX_CACHED_TOKEN_CHARS, InvalidToken, TokenCache, mint_token
from agenttasks.application.tasks import Actor
from agenttasks.settings import Settings, SettingsError

SECRET = "s" * 32


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_cache_keeps_at_most_its_size_dropping_the_least_recently_used() -> None:
    cache = TokenCache(3)
    tokens = [mint_token(SECRET, f"user{n}") for n in range(10)]
    for token in tokens:
        cache.actor(SECRET, token)
    assert len(cache) == 3
    cache.actor(SECRET, tokens[7])  # used again: the oldest is now 8
    cache.actor(SECRET, mint_token(SECRET, "another"))
    assert len(cache) == 3
    assert tokens[7] in cache._verified
    assert tokens[8] not in cache._verified


def test_a_cached_token_is_not_honoured_past_its_expiry() -> None:
    token = mint_token(SECRET, "alice", ttl=60)
    expires = float(jwt.decode(token, options={"verify_signature": False})["exp"])
    clock = Clock(expires - 1)
    cache = TokenCache(10, clock=clock)
    assert cache.actor(SECRET, token) == Actor("alice", is_admin=False)
    # Still within its expiry: the cache answers without checking (a wrong key shows it).
    assert cache.actor("w" * 32, token) == Actor("alice", is_admin=False)
    clock.now = expires
    # Past it: checked again, so the wrong key fails (an expired token fails on its expiry).
    with pytest.raises(InvalidToken):
        cache.actor("w" * 32, token)
    assert token not in cache._verified


def test_an_expired_token_is_refused_and_not_kept() -> None:
    cache = TokenCache(10)
    token = jwt.encode({"sub": "alice", "exp": 1_000_000}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken, match="expired"):
        cache.actor(SECRET, token)
    assert len(cache) == 0


def test_a_forged_token_is_refused_though_the_real_one_is_cached() -> None:
    cache = TokenCache(10)
    real = mint_token(SECRET, "alice")
    cache.actor(SECRET, real)
    forged = jwt.encode(
        {**jwt.decode(real, options={"verify_signature": False}), "roles": ["admin"]},
        "x" * 32,
        algorithm="HS256",
    )
    with pytest.raises(InvalidToken):
        cache.actor(SECRET, forged)
    assert forged not in cache._verified


def test_long_tokens_are_verified_every_time_and_never_kept() -> None:
    cache = TokenCache(10)
    token = mint_token(SECRET, "u" * 200)
    padded = jwt.encode(
        {"sub": "alice", "exp": 4_000_000_000, "pad": "p" * MAX_CACHED_TOKEN_CHARS},
        SECRET,
        algorithm="HS256",
    )
    cache.actor(SECRET, token)
    cache.actor(SECRET, padded)
    assert len(cache) == 1


def test_size_zero_keeps_nothing() -> None:
    cache = TokenCache(0)
    cache.actor(SECRET, mint_token(SECRET, "alice"))
    assert len(cache) == 0


@pytest.mark.parametrize("value", ["-1", "100001", "lots"])
def test_a_cache_size_out_of_bounds_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="AGENTTASKS_TOKEN_CACHE_SIZE"):
        Settings.from_env({"AGENTTASKS_TOKEN_CACHE_SIZE": value})
