"""Per-user limits: the admin's endpoint, and admitting creates and retries against them.

Over a limit a request is answered 429 with `Retry-After` and the IETF draft's `RateLimit-*`
headers; an admitted create carries the rate's `RateLimit-*` headers too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Controller, Request, Response, get, put
from litestar.exceptions import PermissionDeniedException
from litestar.params import JSONBody, Parameter

from agenttasks.api.deps import ApiDeps, CurrentActor, Deps
from agenttasks.api.errors import problem
from agenttasks.api.openapi import AUTHENTICATED, WITH_BODY, problems
from agenttasks.application.quotas import Admission, QuotaExceeded
from agenttasks.application.tasks import Actor
from agenttasks.application.user_limits import Limits, NotAdmin
from agenttasks.domain.limits import MAX_USER_CHARS

T = TypeVar("T")
# The 429 of a create or a retry by hand, in the OpenAPI document.
QUOTA_429 = {429: "Over the user's rate limit or active-tasks limit (Retry-After, RateLimit-*)"}
UserId = Annotated[str, Parameter(min_length=1, max_length=MAX_USER_CHARS)]


class LimitsUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """An admin's overrides for one user; null puts a limit back to the service default."""

    rate_limit: str | None = None  # "120/minute" (second, minute, hour, day) or "off"
    max_active_tasks: int | None = None  # 0: no limit


class LimitsView(msgspec.Struct, kw_only=True):
    """The limits that hold for a user, and where each comes from ("default" or "user")."""

    user: str
    rate_limit: str
    rate_limit_source: str
    max_active_tasks: int
    max_active_tasks_source: str


class LimitsController(Controller):
    """/api/v1/utils/users/{user}/limits/: read (the user, an admin) and set (an admin)."""

    path = "/api/v1/utils/users/{user:str}/limits"
    tags = ["limits"]

    @get("/", responses=problems(*AUTHENTICATED, 403))
    async def read(self, user: UserId, actor: CurrentActor, deps: Deps) -> LimitsView:
        """The user's effective limits (their own, or anyone's for an admin)."""
        if not actor.may_see(user):
            raise PermissionDeniedException("only the user themself or an admin reads these")
        return _view(user, await deps.run(deps.user_limits.effective, user))

    @put("/", responses=problems(*WITH_BODY, 403))
    async def set(
        self, user: UserId, data: JSONBody[LimitsUpdate], actor: CurrentActor, deps: Deps
    ) -> LimitsView:
        """Replaces the user's overrides (admins only); every replica applies them within
        AGENTTASKS_LIMITS_CACHE_SECONDS."""
        commands = deps.user_limits
        await deps.run(commands.set, actor, user, data.rate_limit, data.max_active_tasks)
        deps.limits.forget(user)
        return _view(user, await deps.run(commands.effective, user))


def _view(user: str, limits: Limits) -> LimitsView:
    return LimitsView(
        user=user,
        rate_limit=limits.rate_text,
        rate_limit_source=limits.rate_source,
        max_active_tasks=limits.max_active,
        max_active_tasks_source=limits.active_source,
    )


async def admitted(
    deps: ApiDeps, actor: Actor, write: Callable[[], Awaitable[T]], *, creation: bool = True
) -> tuple[T, dict[str, str]]:
    """Runs `write` if the actor's limits admit it (QuotaExceeded otherwise); its headers."""
    limits = deps.limits.cached(actor.user_id)
    if limits is None:
        limits = await deps.run(deps.limits.get, actor.user_id)
    admission = await deps.quotas.admit(actor.user_id, limits, creation=creation)
    try:
        result = await write()
    except BaseException:
        await deps.quotas.settle(admission, None)
        raise
    await deps.quotas.settle(admission, getattr(result, "position", None))
    return result, _rate_headers(admission)


def _rate_headers(admission: Admission) -> dict[str, str]:
    if admission.rate_limit is None:
        return {}
    return {
        "RateLimit-Limit": str(admission.rate_limit),
        "RateLimit-Remaining": str(admission.rate_remaining),
        "RateLimit-Reset": str(admission.rate_reset),
        "RateLimit-Policy": admission.rate_policy,
    }


def _quota_exceeded(_: Request[Any, Any, Any], error: QuotaExceeded) -> Response[dict[str, Any]]:
    response = problem(429, str(error), limit=error.which)
    response.headers.update(
        {
            "Retry-After": str(error.reset_seconds),
            "RateLimit-Limit": str(error.limit),
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(error.reset_seconds),
            "RateLimit-Policy": error.policy,
        }
    )
    return response


def _not_admin(_: Request[Any, Any, Any], error: NotAdmin) -> Response[dict[str, Any]]:
    return problem(403, str(error))


EXCEPTION_HANDLERS: dict[int | type[Exception], Any] = {
    QuotaExceeded: _quota_exceeded,
    NotAdmin: _not_admin,
}
