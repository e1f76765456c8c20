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
    ) -> None:
        super().__init__(f"{status} {title}" + (f": {detail}" if detail else ""))
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.type = type


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
    )
