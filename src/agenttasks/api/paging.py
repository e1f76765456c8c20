"""Paging links for the list endpoints."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Request


def page_links(
    request: Request[Any, Any, Any], count: int, page: int, page_size: int
) -> tuple[str | None, str | None]:
    """(previous, next) absolute URLs with the same query, or None at either end.

    A `token` is never copied: a link is pasted, bookmarked and logged.
    """

    def link(number: int) -> str:
        query = {k: v for k, v in request.query_params.items() if k.lower() != "token"}
        query.update(page=str(number), page_size=str(page_size))
        return str(request.url.with_replacements(query=urlencode(query)))

    previous = link(page - 1) if page > 1 and count else None
    following = link(page + 1) if page * page_size < count else None
    return previous, following
