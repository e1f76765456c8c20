"""httpx requests sent to a vetted address of a host, for the fetcher and the webhook sender.

The SSRF guard resolves a host once and vets its addresses (fetch_guard); the request must then
go to one of those addresses itself, so that no second lookup (DNS rebinding) can steer it
elsewhere, while the host's name stays in the Host header and in TLS SNI and certificate checks.
"""

from __future__ import annotations

import ssl

import httpx


def pinned_client(
    *, timeout: float, verify: ssl.SSLContext | bool, headers: dict[str, str]
) -> httpx.AsyncClient:
    """A client for pinned requests: no proxies from the environment, no redirects followed."""
    return httpx.AsyncClient(
        trust_env=False,
        follow_redirects=False,
        verify=verify,
        timeout=httpx.Timeout(timeout),
        # Connections are pooled by the address the URL names, which is the vetted IP: a
        # kept-alive TLS connection could serve another host name on that IP with the first
        # one's SNI and certificate. So no connection outlives its response.
        limits=httpx.Limits(max_keepalive_connections=0),
        headers=headers,
    )


def pinned_request(
    client: httpx.AsyncClient,
    method: str,
    url: httpx.URL,
    address: str,
    *,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> httpx.Request:
    """`method url` addressed to `address`, the host's name kept in Host and TLS SNI."""
    name = url.raw_host.decode("ascii")
    host_header = f"[{name}]" if ":" in name else name
    sent = {**(headers or {}), "Host": f"{host_header}:{url.port}" if url.port else host_header}
    extensions = {"sni_hostname": name} if url.scheme == "https" else {}
    return client.build_request(
        method, url.copy_with(host=address), content=content, headers=sent, extensions=extensions
    )
