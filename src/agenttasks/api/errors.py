"""Every error becomes `application/problem+json` (RFC 9457) here, in one place.

Rule violations are 409 with the domain's reason, unknown or invisible tasks 404, bad input 400
with what was wrong; anything unexpected is logged and answered with a plain 500 body that
reveals nothing of the traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from eventsourcing.domain import EventSourcingError
from eventsourcing.persistence import MapperDeserialisationError
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from agenttasks.application.append_lock import AppendLockTimeout
from agenttasks.application.task_configs import ConfigError
from agenttasks.application.tasks import ConcurrencyError, IdempotencyKeyReused, TaskNotFound
from agenttasks.domain.rules import RuleViolation
from agenttasks.live.slots import TooManyStreams

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    402: "Payment required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}


def problem(status: int, detail: str, **extra: Any) -> Response[dict[str, Any]]:
    """A problem-details response."""
    body = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status}
    body["detail"] = detail
    body.update(extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _rule_violation(_: Request[Any, Any, Any], error: RuleViolation) -> Response[dict[str, Any]]:
    return problem(409, str(error))


def _not_found(_: Request[Any, Any, Any], error: TaskNotFound) -> Response[dict[str, Any]]:
    return problem(404, "no such task")


def _key_reused(_: Request[Any, Any, Any], error: IdempotencyKeyReused) -> Response[dict[str, Any]]:
    return problem(422, str(error))


def _config_error(_: Request[Any, Any, Any], error: ConfigError) -> Response[dict[str, Any]]:
    return problem(400, "; ".join(error.errors), errors=error.errors)


def _value_error(request: Request[Any, Any, Any], error: ValueError) -> Response[dict[str, Any]]:
    if _raised_by_us(error):
        return problem(400, str(error))
    # A library's message may quote whatever it was given (stored content, a fetched document,
    # a value from another user): it is logged, and the client hears only that it was refused.
    log.warning("refused %s %s: %s", request.method, request.url.path, type(error).__name__)
    return problem(400, "the request could not be processed as given")


def _unreadable_history(
    request: Request[Any, Any, Any], error: EventSourcingError
) -> Response[dict[str, Any]]:
    log.error("unreadable stored event on %s %s", request.method, request.url.path)
    return problem(
        409,
        "this item's stored history cannot be read; it was set aside for an operator "
        "(`agenttasks quarantine list`)",
    )


def _raised_by_us(error: BaseException) -> bool:
    """Whether the innermost frame that raised `error` is agenttasks' code (our own message)."""
    traceback = error.__traceback__
    if traceback is None:
        return False
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    return str(traceback.tb_frame.f_globals.get("__name__", "")).startswith("agenttasks.")


def _concurrency(_: Request[Any, Any, Any], error: ConcurrencyError) -> Response[dict[str, Any]]:
    return problem(409, str(error))


def _validation(_: Request[Any, Any, Any], error: ValidationException) -> Response[dict[str, Any]]:
    details = error.extra if isinstance(error.extra, list) else []
    messages = [_describe(d) for d in details] or [str(error.detail)]
    return problem(400, "; ".join(messages), errors=messages)


def _http(_: Request[Any, Any, Any], error: HTTPException) -> Response[dict[str, Any]]:
    return problem(error.status_code, str(error.detail))


def _too_many_streams(_: Request[Any, Any, Any], error: TooManyStreams) -> Response[dict[str, Any]]:
    return problem(429, str(error))


def _store_busy(
    request: Request[Any, Any, Any], error: AppendLockTimeout
) -> Response[dict[str, Any]]:
    # Someone holds a conflicting lock on the events table (an open deletion, an operator's
    # session); nothing of this request was stored, so the client may simply send it again.
    log.warning(
        "503 on %s %s: the events table stayed locked for %g s",
        request.method,
        request.url.path,
        error.waited,
    )
    response = problem(503, str(error))
    response.headers["Retry-After"] = str(error.retry_after)
    return response


def _unexpected(request: Request[Any, Any, Any], error: Exception) -> Response[dict[str, Any]]:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return problem(HTTP_500_INTERNAL_SERVER_ERROR, "an unexpected error occurred; it was logged")


def _describe(detail: Any) -> str:
    if not isinstance(detail, dict):
        return str(detail)
    message = str(detail.get("message", "invalid value"))
    key = detail.get("key")
    source = getattr(detail.get("source"), "value", detail.get("source"))  # a ParamType enum
    if not key:
        return message
    if source == "header":
        key = str(key).replace("_", "-")  # the header's name, not the handler's argument
    where = f"`{key}`" if source in (None, "body") else f"{source} parameter `{key}`"
    return f"{where}: {message}"


EXCEPTION_HANDLERS: dict[int | type[Exception], Any] = {
    RuleViolation: _rule_violation,
    TaskNotFound: _not_found,
    IdempotencyKeyReused: _key_reused,
    ConfigError: _config_error,
    ConcurrencyError: _concurrency,
    TooManyStreams: _too_many_streams,
    ValidationException: _validation,
    HTTPException: _http,
    MapperDeserialisationError: _unreadable_history,
    AppendLockTimeout: _store_busy,
    ValueError: _value_error,
    Exception: _unexpected,
}
