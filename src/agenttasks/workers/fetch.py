"""Web pages for agents: httpx to fetch, trafilatura to extract, and a guard against SSRF.

Every host is resolved once and every address it resolves to must be public (fetch_guard),
unless the host is listed in AGENTTASKS_FETCH_ALLOWED_HOSTS. The request then goes to a
checked address itself (no second lookup that DNS rebinding could answer differently), with
the name kept in the Host header and in TLS SNI and certificate checks. Redirects are followed
by hand and each new host is judged on its own: allowing a host by name allows that name only,
so an allowed host cannot redirect a fetch into another non-public address. One deadline
covers the download; the body is read up to a byte cap. Extraction (fetch_extract) runs after
it in a child process with a deadline of its own (extract_pool), so no page can stall the
worker's event loop and its heartbeats.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx

from agenttasks.workers.extract_pool import ExtractionError, ExtractionPool
from agenttasks.workers.fetch_extract import Download
from agenttasks.workers.fetch_guard import (
    Resolver,
    allowed_hosts_from_env,
    normalized_hosts,
    refused_addresses,
    system_resolver,
)
from agenttasks.workers.fetch_pinned import pinned_client, pinned_request
from agenttasks.workers.retry_policy import retry_after_seconds

__all__ = ["FetchError", "Fetcher", "Page", "allowed_hosts_from_env"]

ACCEPTED_TYPES = ("text/html", "application/xhtml+xml", "text/plain")
_REDIRECTS = (301, 302, 303, 307, 308)
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Page:
    url: str  # after redirects
    title: str
    text: str
    chars: int


class FetchError(Exception):
    """A URL that gave nothing usable; the message names it and says why in a sentence.

    kind: refused | timeout | too_large | content_type | http_status | network | empty |
    extraction_timeout | extraction_failed.
    """

    def __init__(
        self,
        url: str,
        kind: str,
        reason: str,
        *,
        transient: bool = False,
        retry_after: float | None = None,
        final_url: str | None = None,
    ) -> None:
        self.url, self.kind, self.reason = url, kind, reason
        self.transient, self.retry_after = transient, retry_after
        self.final_url = final_url or url
        where = url if self.final_url == url else f"{url} (redirected to {self.final_url})"
        super().__init__(f"Could not fetch {where}: {reason}.")


class _Failed(Exception):
    """A FetchError before the fetch knows which URL of its redirect trail it belongs to."""

    def __init__(self, kind: str, reason: str, **advice: Any) -> None:
        super().__init__(kind, reason)
        self.advice = advice  # transient, retry_after


class Fetcher:
    """Fetches and extracts web pages safely; one per worker process."""

    def __init__(
        self,
        allowed_hosts: Iterable[str] = (),
        *,
        max_bytes: int = 5_000_000,
        timeout: float = 15.0,
        max_redirects: int = 5,
        user_agent: str = "agenttasks/0.1",
        resolver: Resolver = system_resolver,
        verify: ssl.SSLContext | bool = True,
        extract_timeout: float = 10.0,
        extract_processes: int = 2,
    ) -> None:
        self.allowed_hosts = normalized_hosts(allowed_hosts)
        self.extraction = ExtractionPool(extract_processes, extract_timeout)
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_redirects = max_redirects
        self._resolve = resolver
        self._client = pinned_client(
            timeout=timeout,
            verify=verify,
            headers={
                "User-Agent": user_agent,
                "Accept": "text/html, application/xhtml+xml, text/plain;q=0.8",
            },
        )

    async def aclose(self) -> None:
        """Closes every connection and stops the extraction processes."""
        await self._client.aclose()
        await self.extraction.aclose()

    async def fetch(self, url: str) -> Page:
        """The page's main text; FetchError when there is nothing usable."""
        trail = [url]
        try:
            try:
                async with asyncio.timeout(self.timeout):
                    download = await self._download(trail)
            except TimeoutError:
                raise _Failed(
                    "timeout", f"no complete answer came within {self.timeout:g} s", transient=True
                ) from None
            try:
                title, text = await self.extraction.extract(download)
            except ExtractionError as error:
                raise _Failed(error.kind, error.reason) from None
        except _Failed as failed:
            raise FetchError(url, *failed.args, final_url=trail[-1], **failed.advice) from None
        if not text:
            raise FetchError(url, "empty", "it has no readable text", final_url=trail[-1])
        return Page(url=trail[-1], title=title, text=text, chars=len(text))

    async def _download(self, trail: list[str]) -> Download:
        for _ in range(self.max_redirects + 1):
            target = _parse(trail[-1])
            addresses = await self._vetted_addresses(target)
            response = await self._open(target, addresses)
            try:
                if response.status_code in _REDIRECTS and "location" in response.headers:
                    trail.append(urljoin(trail[-1], response.headers["location"]))
                    continue
                _check_status(response)
                content_type = _media_type(response)
                if content_type not in ACCEPTED_TYPES:
                    stated = content_type or "of no stated type"
                    raise _Failed("content_type", f"it is {stated}, not HTML or plain text")
                body = await self._read(response)
                return Download(trail[-1], body, content_type, response.charset_encoding)
            except httpx.HTTPError as error:
                raise _network_failure(error) from None
            finally:
                await response.aclose()
        raise _Failed("refused", f"it redirects more than {self.max_redirects} times")

    async def _vetted_addresses(self, url: httpx.URL) -> list[str]:
        """The host's addresses, all of them public unless the host is allowed by name."""
        host = url.raw_host.decode("ascii").lower()
        literal = _ip_literal(host)
        if literal is not None:
            addresses = [literal]
        else:
            addresses = await self._resolved(host, url.port or _DEFAULT_PORTS[url.scheme])
        if host.rstrip(".") not in self.allowed_hosts and (refused := refused_addresses(addresses)):
            found = (
                f"{host} is not a public address"
                if literal
                else f"{host} resolves to a non-public address ({', '.join(refused)})"
            )
            raise _Failed(
                "refused",
                f"{found}; only public addresses are fetched unless the host is listed in "
                "AGENTTASKS_FETCH_ALLOWED_HOSTS",
            )
        return addresses

    async def _resolved(self, host: str, port: int) -> list[str]:
        try:
            addresses = await self._resolve(host, port)
        except OSError as error:
            unknown = isinstance(error, socket.gaierror) and error.errno == socket.EAI_NONAME
            reason = error.strerror or str(error)
            raise _Failed(
                "network", f"{host} could not be resolved ({reason})", transient=not unknown
            ) from None
        if not addresses:
            raise _Failed("network", f"{host} could not be resolved (no address)", transient=True)
        return addresses

    async def _open(self, url: httpx.URL, addresses: list[str]) -> httpx.Response:
        """The response from the first of the host's vetted addresses that takes a connection."""
        failure: httpx.HTTPError | None = None
        for address in addresses:
            request = pinned_request(self._client, "GET", url, address)
            try:
                return await self._client.send(request, stream=True)
            except httpx.ConnectError as error:
                failure = error  # this address refused; the host may answer on its next one
            except httpx.HTTPError as error:
                raise _network_failure(error) from None
        assert failure is not None
        raise _network_failure(failure)

    async def _read(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise _Failed(
                "too_large", f"it is {int(declared):,} bytes, over the limit of {self.max_bytes:,}"
            )
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise _Failed("too_large", f"it is over the limit of {self.max_bytes:,} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


def _parse(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as error:
        raise _Failed("refused", f"it is not a valid URL ({error})") from None
    if parsed.scheme not in ("http", "https"):
        raise _Failed("refused", "only http and https URLs are fetched")
    if not parsed.host:
        raise _Failed("refused", "the URL names no host")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise _Failed("refused", f"{parsed.port} is not a port number")
    return parsed


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def _media_type(response: httpx.Response) -> str:
    return str(response.headers.get("content-type", "")).split(";")[0].strip().lower()


def _check_status(response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    answered = f"the server answered HTTP {status} {response.reason_phrase}".rstrip()
    if status in (429, 503):
        retry_after = retry_after_seconds(response.headers.get("retry-after"))
        if retry_after is not None:
            answered += f" and asked to wait {retry_after:g} s"
            raise _Failed("http_status", answered, transient=True, retry_after=retry_after)
    raise _Failed("http_status", answered, transient=status == 429 or status >= 500)


def _network_failure(error: httpx.HTTPError) -> _Failed:
    detail = str(error) or type(error).__name__
    if isinstance(error, httpx.TimeoutException):
        return _Failed("timeout", f"the connection timed out ({detail})", transient=True)
    if _caused_by(error, ssl.SSLCertVerificationError):  # a retry meets the same certificate
        return _Failed("network", f"its TLS certificate was not accepted ({detail})")
    return _Failed("network", f"the connection failed ({detail})", transient=True)


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
