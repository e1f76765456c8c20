"""One webhook POST through the SSRF guard, with a deadline and a cap on the answer read.

As in workers/fetch.py: the host is resolved once, every address must be public (unless the
host is allowed by name), and the request goes to a vetted address with the name kept in the
Host header and TLS SNI, so DNS rebinding cannot steer it elsewhere. Redirects are not followed
(a webhook is answered where it is sent): a 3xx counts as a failure.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

import httpx

from agenttasks.application.webhooks import WebhookUrlError, vetted_addresses
from agenttasks.workers.fetch_guard import Resolver, system_resolver
from agenttasks.workers.fetch_pinned import pinned_client, pinned_request


@dataclass(frozen=True)
class Answer:
    """How an attempt went: a status code, or our sentence saying why there was none."""

    status_code: int | None
    error: str | None  # None: delivered (a 2xx answer)
    retryable: bool = True


class Sender:
    """Posts signed webhook bodies; one per deliverer process."""

    def __init__(
        self,
        allowed_hosts: frozenset[str],
        *,
        timeout: float,
        max_response_bytes: int,
        resolver: Resolver = system_resolver,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.allowed_hosts = allowed_hosts
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self._resolve = resolver
        self._client = pinned_client(
            timeout=timeout,
            verify=verify,
            headers={"User-Agent": "agenttasks-webhooks/0.1", "Content-Type": "application/json"},
        )

    async def aclose(self) -> None:
        """Closes every connection."""
        await self._client.aclose()

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        """One attempt: POST `body` to `url` within the timeout."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._post(url, body, headers)
        except TimeoutError:
            return Answer(None, f"no answer within {self.timeout:g} s")
        except WebhookUrlError as refused:
            return Answer(None, str(refused))
        except (httpx.InvalidURL, ValueError, UnicodeError):  # checked when given; never retried
            return Answer(None, "the URL is not valid", retryable=False)

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        target = httpx.URL(url)
        addresses = await vetted_addresses(url, self.allowed_hosts, self._resolve)
        failure = "no address took the connection"
        for address in addresses:
            request = pinned_request(
                self._client, "POST", target, address, headers=headers, content=body
            )
            try:
                response = await self._client.send(request, stream=True)
            except httpx.ConnectError:
                failure = "the connection was refused"
                continue  # the host may answer on its next address
            except httpx.HTTPError as error:
                return Answer(None, f"the request failed ({type(error).__name__})")
            try:
                await self._drain(response)
            finally:
                await response.aclose()
            if 200 <= response.status_code < 300:
                return Answer(response.status_code, None)
            return Answer(
                response.status_code, f"the endpoint answered HTTP {response.status_code}"
            )
        return Answer(None, failure)

    async def _drain(self, response: httpx.Response) -> None:
        # The answer is not used; read at most the cap, so a huge one cannot hold us.
        size = 0
        try:
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > self.max_response_bytes:
                    return
        except httpx.HTTPError:
            return
