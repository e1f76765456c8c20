"""The requests the client makes and how their answers are read, shared by both clients."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qsl, urlsplit
from uuid import UUID

import httpx
import msgspec

from agenttasks.client.errors import ApiError, error_of
from agenttasks.client.models import Task
from agenttasks.client.options import RetryableStatus

T = TypeVar("T")
BASE = "/api/v1/utils"
RETRY_STATUSES = frozenset({502, 503, 504})  # a proxy or a restarting API: worth reconnecting


class Paged(msgspec.Struct, Generic[T], kw_only=True):
    """Any paged answer: the items and the link to the next page."""

    results: list[T]
    next: str | None = None


@dataclass(frozen=True)
class Call:
    """One HTTP request, before it is sent."""

    method: str
    path: str
    params: dict[str, str] | None = None
    json: Any = None
    headers: dict[str, str] | None = None


def create(
    title: str,
    task_type: str,
    task_config: dict[str, Any],
    *,
    priority: str | None,
    max_retries: int | None,
    timeout_seconds: int | None,
    idempotency_key: str | None,
) -> Call:
    """POST /ai-tasks/, leaving out what the server defaults."""
    body: dict[str, Any] = {"title": title, "task_type": task_type, "task_config": task_config}
    optional = {
        "priority": priority,
        "max_retries": max_retries,
        "timeout_seconds": timeout_seconds,
    }
    body.update({name: value for name, value in optional.items() if value is not None})
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
    return Call("POST", f"{BASE}/ai-tasks/", json=body, headers=headers)


def task(
    task_id: UUID | str, action: str = "", body: Any = None, min_position: int | None = None
) -> Call:
    """GET a task (once it reflects `min_position`), or POST one of its actions."""
    path = f"{BASE}/ai-tasks/{task_id}/" + (f"{action}/" if action else "")
    params = {"min_position": str(min_position)} if min_position is not None else None
    return Call("POST" if action else "GET", path, params=params, json=body)


def listing(page_size: int, **filters: str | None) -> Call:
    """GET /ai-tasks/ with the filters that are set."""
    params = {name: value for name, value in filters.items() if value is not None}
    params["page_size"] = str(page_size)
    return Call("GET", f"{BASE}/ai-tasks/", params=params)


def history(
    task_id: UUID | str, kind: str, after: int | None = None, min_position: int | None = None
) -> Call:
    """GET a task's updates (after a position) or its stored events."""
    params = {"after": str(after)} if after else {}
    if min_position is not None:
        params["min_position"] = str(min_position)
    return Call("GET", f"{BASE}/ai-tasks/{task_id}/{kind}/", params=params or None)


def following(call: Call, next_link: str | None) -> Call | None:
    """The call for the next page, or None after the last.

    Only the link's query is used, on our own path: the token is never sent to a host the
    answer names, and a proxy's path prefix is kept.
    """
    if not next_link:
        return None
    return replace(call, params=dict(parse_qsl(urlsplit(next_link).query)))


def decode(response: httpx.Response, kind: type[T]) -> T:
    """The answer as `kind`, or the ApiError the server's problem details describe."""
    if response.status_code >= 400:
        raise error_of(response)
    try:
        value: T = msgspec.json.decode(response.content, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise ApiError(
            response.status_code, "Unreadable answer", "the answer is not what the API sends"
        ) from error
    return value


def items(response: httpx.Response, kind: type[T]) -> tuple[list[T], str | None]:
    """A list answer, plain or paged: its items and the next page's link."""
    shape: Any = list[kind] | Paged[kind]  # type: ignore[valid-type]
    answer = decode(response, shape)
    if isinstance(answer, Paged):
        return answer.results, answer.next
    return answer, None


def stream_failure(response: httpx.Response) -> Exception:
    """What a stream's non-200 answer (read already) raises: worth a reconnect, or final."""
    if response.status_code in RETRY_STATUSES:
        return RetryableStatus(error_of(response))
    return error_of(response)


def unseen(tasks: list[Task], seen: set[UUID]) -> list[Task]:
    """The tasks of a page not passed on yet; they are counted as seen now."""
    # A task created while we page pushes the others down a place: skip repeats.
    fresh = []
    for task in tasks:
        if task.id not in seen:
            seen.add(task.id)
            fresh.append(task)
    return fresh
