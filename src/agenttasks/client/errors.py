"""The one exception an API answer raises: the problem details the server sent."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from agenttasks.client.models import Problem

_problem = msgspec.json.Decoder(Problem)


class ApiError(Exception):
    """An error answer from the API, carrying its problem+json (RFC 9457) fields."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        errors: list[Any] | None = None,
        type: str = "about:blank",
        *,
        problem: Problem | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(f"{status} {title}" + (f": {detail}" if detail else ""))
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.type = type
        # Every field of the problem document (a 402's budget and resets_at among them).
        self.problem = problem or Problem(status=status, title=title, detail=detail)
        self.retry_after = retry_after  # seconds (Retry-After of a 402, 429 or 503), or None


def error_of(response: httpx.Response) -> ApiError:
    """The ApiError for an error response (read it first); a body that is not problem+json
    (a proxy's HTML page) still gives the status and its reason phrase."""
    try:
        problem = _problem.decode(response.content)
    except (msgspec.DecodeError, msgspec.ValidationError):
        problem = Problem()
    return ApiError(
        status=response.status_code,
        title=problem.title or response.reason_phrase or "Error",
        detail=problem.detail,
        errors=problem.errors,
        type=problem.type or "about:blank",
        problem=problem,
        retry_after=_seconds(response.headers.get("retry-after")),
    )


def _seconds(value: str | None) -> int | None:
    # Our API sends whole seconds; an HTTP date (from a proxy) is left to the caller's headers.
    if value is None or not value.strip().isdigit() or len(value) > 12:
        return None
    return int(value)
