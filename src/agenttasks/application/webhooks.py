"""Webhooks' rules shared by the API and the deliverer: events, URL checks, limits, secrets.

The URL rules are the fetch's SSRF guard (workers/fetch_guard.py, stdlib only): a webhook goes
out from inside our network, so a URL naming a private address would let a user make the
service call its own neighbours. A URL is judged when it is given (syntax, and every address
its host resolves to) and again before each delivery (DNS can change in between).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from agenttasks.workers.fetch_guard import Resolver, normalized_host, refused_addresses

# The events a webhook may be sent for: the three ways a task ends, and a user's budget alert
# (docs/cost.md, "Budgets").
TASK_EVENT_TYPES = ("task.completed", "task.failed", "task.cancelled")
BUDGET_EVENT_TYPES = ("budget.soft_limit_reached",)
EVENT_TYPES = TASK_EVENT_TYPES + BUDGET_EVENT_TYPES
KIND_OF_EVENT = {name: name.removeprefix("task.") for name in TASK_EVENT_TYPES}
RESOLVE_SECONDS = 5.0  # a host name that does not resolve by then is refused
SECRET_PREFIX = "whsec_"  # noqa: S105 (the form of a secret, not one)


class WebhookUrlError(ValueError):
    """A webhook URL we refuse; the message says why in our words."""


class TooManyWebhooks(Exception):
    """A user already has as many endpoints as the cap allows."""


@dataclass(frozen=True)
class WebhookLimits:
    """The caps on what a user can register (settings `webhook_*`)."""

    max_endpoints_per_user: int = 10
    max_url_chars: int = 2048


def check_url_syntax(url: str, max_chars: int) -> str:
    """The URL as given, if it is an http(s) URL with a host under the length cap."""
    if len(url) > max_chars:
        raise WebhookUrlError(f"webhook_url is {len(url)} characters; the limit is {max_chars}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookUrlError("webhook_url is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise WebhookUrlError("webhook_url must be an http or https URL")
    if not parts.hostname:
        raise WebhookUrlError("webhook_url names no host")
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlError("webhook_url must not carry credentials")
    if port is not None and not 0 < port < 65536:
        raise WebhookUrlError(f"{port} is not a port number")
    if any(ord(c) < 33 for c in url):
        raise WebhookUrlError("webhook_url must not contain spaces or control characters")
    return url


def host_and_port(url: str) -> tuple[str, int]:
    """The URL's host (normalized) and port (the scheme's default when none is given)."""
    parts = urlsplit(url)
    return normalized_host(parts.hostname or ""), parts.port or (
        443 if parts.scheme == "https" else 80
    )


async def vetted_addresses(url: str, allowed_hosts: frozenset[str], resolve: Resolver) -> list[str]:
    """The addresses a delivery to `url` may connect to; WebhookUrlError when none may be."""
    host, port = host_and_port(url)
    try:
        addresses = [str(ipaddress.ip_address(host))]
        literal = True
    except ValueError:
        literal = False
        try:
            async with asyncio.timeout(RESOLVE_SECONDS):
                addresses = await resolve(host, port)
        except (OSError, TimeoutError):
            raise WebhookUrlError(f"{host} could not be resolved") from None
    if not addresses:
        raise WebhookUrlError(f"{host} could not be resolved")
    if host not in allowed_hosts and (refused := refused_addresses(addresses)):
        found = (
            f"{host} is not a public address"
            if literal
            else f"{host} resolves to a non-public address ({', '.join(refused)})"
        )
        raise WebhookUrlError(
            f"{found}; webhooks go to public addresses only, unless the host is listed in "
            "AGENTTASKS_FETCH_ALLOWED_HOSTS"
        )
    return addresses


async def check_url(
    url: str, limits: WebhookLimits, allowed_hosts: frozenset[str], resolve: Resolver
) -> str:
    """The URL, if it is well formed and its host is one webhooks may reach."""
    check_url_syntax(url, limits.max_url_chars)
    await vetted_addresses(url, allowed_hosts, resolve)
    return url


def new_secret() -> str:
    """A fresh signing secret in the Standard Webhooks form (`whsec_` + base64 of 24 bytes)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def task_url_secret(service_secret: str, user: str) -> str:
    """The secret that signs deliveries to the `webhook_url` of `user`'s tasks.

    Derived from the service's secret, so it needs no storage and each user has their own.
    """
    digest = hmac.new(
        service_secret.encode(), f"agenttasks webhook {user}".encode(), hashlib.sha256
    ).digest()
    return SECRET_PREFIX + base64.b64encode(digest[:24]).decode()
