"""The SSRF guard: only global unicast addresses are public, whatever their spelling."""

from __future__ import annotations

import pytest

from agenttasks.workers.fetch_guard import (
    allowed_hosts_from_env,
    is_public,
    normalized_host,
    refused_addresses,
)

NON_PUBLIC = {
    "127.0.0.1": "loopback",
    "127.8.9.10": "loopback, anywhere in 127/8",
    "10.0.0.1": "private",
    "172.16.5.4": "private",
    "192.168.1.1": "private",
    "169.254.169.254": "link-local: the cloud metadata service",
    "100.64.0.1": "carrier-grade NAT",
    "192.0.2.1": "documentation",
    "198.18.0.1": "benchmarking",
    "0.0.0.0": "unspecified: reaches the local host",
    "0.1.2.3": "this network",
    "224.0.0.1": "multicast",
    "255.255.255.255": "broadcast",
    "240.0.0.1": "reserved",
    "::1": "IPv6 loopback",
    "::": "IPv6 unspecified",
    "fe80::1": "IPv6 link-local",
    "fe80::1%eth0": "IPv6 link-local with a zone",
    "fc00::1": "unique-local",
    "fd12:3456::1": "unique-local",
    "fec0::1": "site-local (deprecated)",
    "ff02::1": "IPv6 multicast",
    "2001:db8::1": "IPv6 documentation",
    "100::1": "discard-only",
    "::ffff:127.0.0.1": "IPv4-mapped loopback",
    "::ffff:7f00:1": "IPv4-mapped loopback in hex",
    "::ffff:169.254.169.254": "IPv4-mapped metadata service",
    "::ffff:10.0.0.1": "IPv4-mapped private",
    "::ffff:0.0.0.0": "IPv4-mapped unspecified",
    "::127.0.0.1": "IPv4-compatible loopback",
    "::10.0.0.1": "IPv4-compatible private",
    "::ffff:0:127.0.0.1": "IPv4-translated",
    "64:ff9b::10.0.0.1": "NAT64 of a private address",
    "64:ff9b::7f00:1": "NAT64 of loopback",
    "64:ff9b::a9fe:a9fe": "NAT64 of the metadata service",
    "64:ff9b:1::a00:1": "local-use NAT64",
    "2002:7f00:1::1": "6to4 of loopback",
    "2002:a00:1::1": "6to4 of a private address",
    "2130706433": "a host name, not an address",
    "not an address": "no address at all",
    "": "empty",
}


@pytest.mark.parametrize("address", NON_PUBLIC, ids=list(NON_PUBLIC.values()))
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public(address)


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700:4700::1111",
        "2a00:1450:4001:80b::200e",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public(address)


def test_a_host_is_refused_when_any_of_its_addresses_is_not_public() -> None:
    assert refused_addresses(["8.8.8.8", "10.0.0.1", "2606:4700:4700::1111", "::1"]) == [
        "10.0.0.1",
        "::1",
    ]
    assert refused_addresses(["8.8.8.8", "1.1.1.1"]) == []


@pytest.mark.parametrize(
    ("written", "compared"),
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        (" intranet ", "intranet"),
        ("[::1]", "::1"),
        ("127.0.0.1", "127.0.0.1"),
    ],
)
def test_hosts_are_compared_in_one_spelling(written: str, compared: str) -> None:
    assert normalized_host(written) == compared


def test_allowed_hosts_are_read_from_a_comma_separated_list() -> None:
    assert allowed_hosts_from_env(" 127.0.0.1, Docs.Internal. ,,[::1] ,") == frozenset(
        {"127.0.0.1", "docs.internal", "::1"}
    )
    assert allowed_hosts_from_env("") == frozenset()
    assert allowed_hosts_from_env(None) == frozenset()
