"""A Response whose ASGI answer is built directly: the same status, headers and body as Litestar's.

Litestar turns a Response into an ASGIResponse through a `MutableScopeHeaders` (each name
lowered and encoded on `add`, then `setdefault` for content-type and content-length, each a
scan of the list through `typing.Mapping` checks): ~5% of the API's CPU per create (APIPATH2).
`EncodedResponse` builds the same raw header list, in the same order, and the same body bytes
(Litestar's own `render`, with the app's serializer), and falls back to Litestar's path for
anything it does not handle (cookies, background tasks, HEAD, a layer's response headers).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from litestar import Request, Response
from litestar.background_tasks import BackgroundTask, BackgroundTasks
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.enums import MediaType, OpenAPIMediaType
from litestar.response.base import ASGIResponse
from litestar.serialization import get_serializer
from litestar.types import ResponseCookies, ResponseHeaders, TypeEncodersMap

T = TypeVar("T")

_JSON = MediaType.JSON.value


class _Prepared(ASGIResponse):
    """An ASGIResponse given its raw headers: what `ASGIResponse.__init__` would have built."""

    def __init__(self, status_code: int, raw_headers: list[tuple[bytes, bytes]], body: bytes):
        # Not calling super().__init__: it would rebuild `raw_headers` one `add` at a time. The
        # same attributes, `headers` over the same list, so Litestar's own methods work as ever.
        self.background = None
        self.body = body
        self.content_length = len(body)
        self._encoded_cookies = ()
        self.encoding = "utf-8"
        self.headers = MutableScopeHeaders({"headers": raw_headers})
        self.is_head_response = False
        self.status_code = status_code


class EncodedResponse(Response[T]):
    """A JSON Response (str headers, no cookies) answered without Litestar's header layers."""

    def __init__(
        self,
        content: T,
        *,
        background: BackgroundTask | BackgroundTasks | None = None,
        cookies: ResponseCookies | None = None,
        encoding: str = "utf-8",
        headers: ResponseHeaders | None = None,
        media_type: MediaType | OpenAPIMediaType | str | None = None,
        status_code: int | None = None,
        type_encoders: TypeEncodersMap | None = None,
    ) -> None:
        """As Response's; without its `typing.Mapping` checks when headers are a dict or None."""
        if cookies is not None or (headers is not None and type(headers) is not dict):
            super().__init__(
                content,
                background=background,
                cookies=cookies,
                encoding=encoding,
                headers=headers,
                media_type=media_type,
                status_code=status_code,
                type_encoders=type_encoders,
            )
            return
        self.content = content
        self.background = background
        self.cookies = []
        self.encoding = encoding
        self.headers = dict(headers) if headers else {}
        self.media_type = media_type
        self.status_code = status_code
        self.response_type_encoders = {**(self.type_encoders or {}), **(type_encoders or {})}

    def to_asgi_response(
        self,
        app: Any,
        request: Request[Any, Any, Any],
        *,
        background: BackgroundTask | BackgroundTasks | None = None,
        cookies: Iterable[Cookie] | None = None,
        encoded_headers: Iterable[tuple[bytes, bytes]] | None = None,
        headers: dict[str, str] | None = None,
        is_head_response: bool = False,
        media_type: MediaType | str | None = None,
        status_code: int | None = None,
        type_encoders: TypeEncodersMap | None = None,
    ) -> ASGIResponse:
        """Litestar's ASGIResponse for this answer, built directly when nothing unusual is set."""
        cookie_list = list(cookies or ())
        status = self.status_code or status_code
        kind = self.media_type or media_type or _JSON
        plain = (
            app is None
            and not headers
            and not cookie_list
            and not self.cookies
            and encoded_headers is None
            and background is None
            and self.background is None
            and not is_head_response
            and kind == _JSON  # MediaType.JSON is a str enum: equal to its value
            and status is not None
            and status >= 200
            and status not in (204, 304)
        )
        if status is None or not plain:
            return super().to_asgi_response(
                app,
                request,
                background=background,
                cookies=cookie_list,
                encoded_headers=encoded_headers,
                headers=headers,
                is_head_response=is_head_response,
                media_type=media_type,
                status_code=status_code,
                type_encoders=type_encoders,
            )
        if type_encoders:
            type_encoders = {**type_encoders, **(self.response_type_encoders or {})}
        else:
            type_encoders = self.response_type_encoders
        body = self.render(self.content, _JSON, get_serializer(type_encoders))
        # As MutableScopeHeaders.add: names lowered, both latin-1; then content-type and -length.
        raw = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in self.headers.items()
        ]
        names = {name for name, _ in raw}
        if b"content-type" not in names:
            raw.append((b"content-type", b"application/json"))
        if b"content-length" not in names:
            raw.append((b"content-length", str(len(body)).encode("latin-1")))
        return _Prepared(status, raw, body)
