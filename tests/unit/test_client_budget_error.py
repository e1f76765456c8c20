"""The client's ApiError carries a 402's budget, its reset and Retry-After (docs/cost.md)."""

from __future__ import annotations

import json

import httpx

from agenttasks.client import ApiError
from agenttasks.client.errors import error_of

BODY = {
    "type": "about:blank",
    "title": "Payment required",
    "status": 402,
    "detail": "your budget of 5.00/day USD is spent for this day (5.01 USD); it resets at ...",
    "budget": "5.00/day",
    "budget_source": "user",
    "spent_usd": "5.01",
    "resets_at": "2026-12-02T00:00:00+00:00",
}


def test_a_402_gives_the_budget_its_reset_and_retry_after() -> None:
    response = httpx.Response(
        402,
        headers={"Content-Type": "application/problem+json", "Retry-After": "3600"},
        content=json.dumps(BODY).encode(),
    )
    error = error_of(response)
    assert isinstance(error, ApiError)
    assert (error.status, error.title) == (402, "Payment required")
    assert error.problem.budget == "5.00/day"
    assert error.problem.budget_source == "user"
    assert error.problem.resets_at == "2026-12-02T00:00:00+00:00"
    assert error.retry_after == 3600


def test_a_retry_after_that_is_not_whole_seconds_is_none() -> None:
    for value in ("Wed, 02 Dec 2026 00:00:00 GMT", "9" * 40, "-5"):
        response = httpx.Response(429, headers={"Retry-After": value}, content=b"{}")
        assert error_of(response).retry_after is None
