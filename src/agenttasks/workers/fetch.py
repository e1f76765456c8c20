"""Web pages for agents: httpx to fetch, trafilatura to extract, and a guard against SSRF.

Every host is resolved once and every address it resolves to must be public (address_guard),
unless the host is listed in AGENTTASKS_FETCH_ALLOWED_HOSTS. The request then goes to the
checked address itself (no second lookup a DNS rebinding could answer differently), with the
name kept in the Host header and TLS SNI. Redirects are followed by hand, each one checked the
same way. One deadline covers the whole fetch; the body is read up to a byte cap.
"""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time
from collections.abc import Iterable
from configparser import ConfigParser
from dataclasses import dataclass
from functools import cache
from urllib.parse import urljoin

import httpx

from agenttasks.workers.address_guard import is_public

ACCEPTED_TYPES = ("text/html", "application/xhtml+xml", "text/plain")
_REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True)
class Page:
    url: str  # after redirects
    title: str
    text: str
    chars: int


class FetchError(Exception):
    """A URL that gave nothing usable; the message names it and says why."""

    def __init__(
        self, url: str, kind: str, message: str, *, transient: bool = False,
        retry_after: float | None = None,
    ) -> None:  # fmt: skip
        super().__init__(f"{url}: {message}")
        self.url = url
        self.kind = kind
        self.transient = transient
        self.retry_after = retry_after


class Fetcher:
    """Fetches and extracts web pages safely; one per worker process."""

    def __init__(
        self,
        allowed_hosts: Iterable[str] = (),
        *,
        max_bytes: int = 5_000_000,
        timeout: float = 15.0,
        max_redirects: int = 5,
        user_agent: str = "agenttasks/0.1 (+https://github.com/agenttasks)",
    ) -> None:
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_redirects = max_redirects
        self._client = httpx.AsyncClient(
            trust_env=False,
            follow_redirects=False,
            timeout=httpx.Timeout(timeout),
            headers={"User-Agent": user_agent, "Accept": "text/html, text/plain;q=0.8"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch(self, url: str) -> Page:
        """The page's main text; FetchError when there is nothing usable."""
        try:
            async with asyncio.timeout(self.timeout):
                final_url, body, content_type = await self._download(url)
        except TimeoutError:
            raise FetchError(
                url, "timeout", f"no complete answer within {self.timeout:g} s", transient=True
            ) from None
        return await asyncio.to_thread(_extract, final_url, body, content_type)

    async def _download(self, url: str) -> tuple[str, bytes, str]:
        current = url
        for _ in range(self.max_redirects + 1):
            parsed = _parse(current)
            address = await self._vetted_address(parsed)
            request = self._client.build_request(
                "GET",
                parsed.copy_with(host=address),
                headers={"Host": _host_header(parsed)},
                extensions={"sni_hostname": parsed.host} if parsed.scheme == "https" else {},
            )
            try:
                response = await self._client.send(request, stream=True)
            except httpx.HTTPError as error:
                raise FetchError(
                    current, "network", f"{type(error).__name__}: {error}", transient=True
                ) from None
            try:
                if response.status_code in _REDIRECTS and "location" in response.headers:
                    current = urljoin(current, response.headers["location"])
                    continue
                _check_status(current, response)
                content_type = (
                    response.headers.get("content-type", "").split(";")[0].strip().lower()
                )
                if content_type not in ACCEPTED_TYPES:
                    raise FetchError(
                        current,
                        "content_type",
                        f"is {content_type or 'of no stated type'}, not HTML or text",
                    )
                return current, await self._read(current, response), content_type
            finally:
                await response.aclose()
        raise FetchError(url, "too_many_redirects", f"more than {self.max_redirects} redirects")

    async def _vetted_address(self, url: httpx.URL) -> str:
        host = url.host.lower()
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, url.port or (443 if url.scheme == "https" else 80), type=socket.SOCK_STREAM
            )
        except socket.gaierror as error:
            raise FetchError(
                str(url), "network", f"cannot resolve {host}: {error.strerror}", transient=True
            ) from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if host not in self.allowed_hosts:
            refused = [a for a in addresses if not is_public(a)]
            if refused or not addresses:
                raise FetchError(
                    str(url),
                    "refused",
                    f"{host} resolves to a non-public address ({', '.join(refused)}); "
                    "list it in AGENTTASKS_FETCH_ALLOWED_HOSTS to allow it",
                )
        return addresses[0]

    async def _read(self, url: str, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchError(
                url, "too_large", f"is {int(declared):,} bytes; the limit is {self.max_bytes:,}"
            )
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise FetchError(url, "too_large", f"is over the limit of {self.max_bytes:,} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


def _parse(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as error:
        raise FetchError(url, "invalid_url", f"is not a valid URL ({error})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise FetchError(url, "invalid_url", "only http and https URLs with a host can be fetched")
    return parsed


def _host_header(url: httpx.URL) -> str:
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{host}:{url.port}" if url.port else host


def _check_status(url: str, response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    retry_after = _retry_after(response.headers.get("retry-after"))
    transient = status == 429 or status >= 500
    raise FetchError(
        url, "http_status", f"answered HTTP {status}", transient=transient, retry_after=retry_after
    )


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _extract(url: str, body: bytes, content_type: str) -> Page:
    import trafilatura  # ~0.5 s to import: only workers that fetch pay for it

    if content_type == "text/plain":
        text = body.decode("utf-8", errors="replace").strip()
        title = text.splitlines()[0][:200] if text else ""
    else:
        document = trafilatura.bare_extraction(
            body, url=url, include_comments=False, with_metadata=True, config=extraction_config()
        )
        text = (getattr(document, "text", None) or "").strip()
        title = (getattr(document, "title", None) or "").strip()
    if not text:
        raise FetchError(url, "empty", "has no text that could be extracted")
    return Page(url=url, title=title, text=text, chars=len(text))


@cache
def extraction_config() -> ConfigParser:
    """trafilatura's settings, lowered for short pages (NOTES: else it returns boilerplate)."""
    from trafilatura.settings import use_config

    config = use_config()
    config.set("DEFAULT", "MIN_EXTRACTED_SIZE", "50")
    config.set("DEFAULT", "MIN_OUTPUT_SIZE", "10")
    config.set("DEFAULT", "EXTRACTION_TIMEOUT", "0")  # its signal-based timeout breaks in threads
    return config
