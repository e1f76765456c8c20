"""Which network addresses a fetch may reach: public ones, or those of hosts the operator allowed.

The SSRF guard of workers/fetch.py. A host is judged by every address it resolves to, after
resolution, so spellings such as `2130706433`, `0x7f.1` or `localhost.` are caught as well.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""(host, port) -> the host's addresses, best first; raises OSError when it has none."""

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_6TO4 = ipaddress.ip_network("2002::/16")


def is_public(address: str) -> bool:
    """Whether `address` is a global unicast address (IPv4-in-IPv6 forms judged by their IPv4)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or _embedded_ipv4(ip)
        if embedded is not None:
            return is_public(str(embedded))
        if ip.is_site_local:  # deprecated fec0::/10, which Python still counts as global
            return False
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _6TO4:
        return ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF)
    if int(ip) >> 32 == 0 and int(ip) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def normalized_host(host: str) -> str:
    """A host name as the guard compares it: lower case, no IPv6 brackets, no final dot."""
    return host.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")


def allowed_hosts_from_env(value: str | None) -> frozenset[str]:
    """The hosts named in AGENTTASKS_FETCH_ALLOWED_HOSTS (comma-separated), normalized."""
    return normalized_hosts((value or "").split(","))


def normalized_hosts(hosts: Iterable[str]) -> frozenset[str]:
    """`hosts` normalized, blanks dropped."""
    return frozenset(h for h in map(normalized_host, hosts) if h)


def refused_addresses(addresses: Iterable[str]) -> list[str]:
    """The addresses among `addresses` that a fetch must not reach."""
    return [a for a in addresses if not is_public(a)]


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver (getaddrinfo, in the loop's executor)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))
