"""What the API does with webhooks: register (URL vetted, secret made), list, read, remove.

Each user sees only their own endpoints; admins see everyone's. An endpoint another user owns
is answered as missing, never as forbidden, so ids cannot be probed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from agenttasks.application.tasks import Actor
from agenttasks.application.webhooks import (
    EVENT_TYPES,
    WebhookLimits,
    WebhookUrlError,
    check_url,
    new_secret,
    task_url_secret,
)
from agenttasks.webhooks import store
from agenttasks.workers.fetch_guard import Resolver, system_resolver


class WebhookNotFound(LookupError):
    """No such endpoint, or not one this user may see."""


@dataclass
class WebhookService:
    """The endpoints' commands and queries, on the API's connection pool."""

    pool: AsyncConnectionPool[Any]
    limits: WebhookLimits
    allowed_hosts: frozenset[str]
    service_secret: str
    resolve: Resolver = system_resolver

    async def check_url(self, url: str) -> str:
        """The URL, if webhooks may be sent there (syntax, length, public addresses)."""
        return await check_url(url, self.limits, self.allowed_hosts, self.resolve)

    async def register(
        self, actor: Actor, url: str, events: list[str]
    ) -> tuple[store.Endpoint, str]:
        """A new endpoint of `actor` and its secret (shown this once)."""
        unknown = [e for e in events if e not in EVENT_TYPES]
        if unknown or not events:
            raise WebhookUrlError(
                f"events must list one or more of {', '.join(EVENT_TYPES)}"
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            )
        await self.check_url(url)
        secret = new_secret()
        endpoint = await store.register(
            self.pool,
            owner=actor.user_id,
            url=url,
            events=list(dict.fromkeys(events)),
            secret=secret,
            max_per_user=self.limits.max_endpoints_per_user,
        )
        return endpoint, secret

    async def list_endpoints(
        self, actor: Actor, limit: int, offset: int
    ) -> tuple[int, list[store.Endpoint]]:
        """One page of the endpoints `actor` may see."""
        return await store.endpoints(
            self.pool, None if actor.is_admin else actor.user_id, limit, offset
        )

    async def get(self, actor: Actor, endpoint_id: UUID) -> store.Endpoint:
        """One endpoint `actor` may see."""
        found = await store.endpoint(self.pool, endpoint_id)
        if found is None or not actor.may_see(found.owner):
            raise WebhookNotFound(endpoint_id)
        return found

    async def remove(self, actor: Actor, endpoint_id: UUID) -> None:
        """Deletes an endpoint `actor` may see, with its secret and its deliveries."""
        await self.get(actor, endpoint_id)
        await store.remove(self.pool, endpoint_id)

    async def attempts(
        self, actor: Actor, endpoint_id: UUID, limit: int, offset: int
    ) -> tuple[int, list[dict[str, Any]]]:
        """One page of an endpoint's delivery attempts, newest first."""
        await self.get(actor, endpoint_id)
        return await store.attempts(self.pool, endpoint_id, limit, offset)

    async def task_attempts(
        self, actor: Actor, task_id: UUID, limit: int, offset: int
    ) -> tuple[int, list[dict[str, Any]]]:
        """One page of the attempts to the `webhook_url` of a task `actor` may see."""
        owner = None if actor.is_admin else actor.user_id
        return await store.task_attempts(self.pool, owner, task_id, limit, offset)

    def task_url_secret(self, actor: Actor) -> str:
        """The secret that signs deliveries to the `webhook_url` of `actor`'s tasks."""
        return task_url_secret(self.service_secret, actor.user_id)
