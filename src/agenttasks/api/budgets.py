"""Budgets: the admins' endpoints, and refusing creates and retries of a user over budget.

A user whose budget is spent for the current UTC day or month is answered 402 Payment Required
(not 429: asking again soon does not help, only the period's end or a bigger budget does), with
`Retry-After` until the period ends and the budget and its reset in the problem document.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, put
from litestar.exceptions import PermissionDeniedException
from litestar.params import JSONBody, Parameter

from agenttasks.api.deps import ApiDeps, CurrentActor, Deps
from agenttasks.api.errors import problem
from agenttasks.api.openapi import AUTHENTICATED, WITH_BODY, problems
from agenttasks.application.budgets import EffectiveBudget, NotAdminForBudgets, OverBudget
from agenttasks.application.prices import format_usd
from agenttasks.application.spend_ledger import Standing
from agenttasks.application.tasks import Actor
from agenttasks.domain.budget import MAX_BUDGET_CHARS, MAX_USER_CHARS

# The 402 of a create or a retry by hand, in the OpenAPI document.
BUDGET_402 = {402: "The user's budget is spent for this period (Retry-After: until it resets)"}
UserId = Annotated[str, Parameter(min_length=1, max_length=MAX_USER_CHARS)]


class BudgetUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """An admin's budget; null falls back (a user's to the default, the default to the setting)."""

    budget: Annotated[str, msgspec.Meta(max_length=MAX_BUDGET_CHARS)] | None = None
    soft_limit_percent: int | None = None  # 1-100: the share that emits the soft-limit event


class BudgetView(msgspec.Struct, kw_only=True):
    """The budget that holds, where it comes from, and (for a user) the period so far."""

    user: str | None  # None: the default budget
    budget: str  # 5.00/day, 50/month or off
    source: str  # user, default (an admin's default budget) or setting
    soft_limit_percent: int
    period_start: str | None = None
    resets_at: str | None = None
    spent_usd: str | None = None
    reserved_usd: str | None = None  # by model calls under way
    remaining_usd: str | None = None


class BudgetController(Controller):
    """/api/v1/utils/users/{user}/budget/ and /api/v1/utils/budgets/default/."""

    path = "/api/v1/utils"
    tags = ["budgets"]

    @get("/users/{user:str}/budget/", responses=problems(*AUTHENTICATED, 403))
    async def read(self, user: UserId, actor: CurrentActor, deps: Deps) -> BudgetView:
        """The user's budget and spending this period (their own, or anyone's for an admin)."""
        if not actor.may_see(user):
            raise PermissionDeniedException("only the user themself or an admin reads this")
        budget, standing = await deps.budgets.standing(user)
        return _view(user, budget, standing)

    @put("/users/{user:str}/budget/", responses=problems(*WITH_BODY, 403))
    async def set(
        self, user: UserId, data: JSONBody[BudgetUpdate], actor: CurrentActor, deps: Deps
    ) -> BudgetView:
        """Sets the user's budget (admins only); every process applies it within
        AGENTTASKS_BUDGETS_CACHE_SECONDS."""
        budgets = deps.budgets
        await deps.run(budgets.commands.set, actor, user, data.budget, data.soft_limit_percent)
        budgets.lookup.forget(user)
        budget, standing = await budgets.standing(user)
        return _view(user, budget, standing)

    @get("/budgets/default/", responses=problems(*AUTHENTICATED))
    async def read_default(self, actor: CurrentActor, deps: Deps) -> BudgetView:
        """The budget of every user without one of their own (to anyone signed in)."""
        del actor  # asked for so that the request is authenticated at all
        return _view(None, await deps.run(deps.budgets.commands.effective, None), None)

    @put("/budgets/default/", responses=problems(*WITH_BODY, 403))
    async def set_default(
        self, data: JSONBody[BudgetUpdate], actor: CurrentActor, deps: Deps
    ) -> BudgetView:
        """Sets the default budget (admins only)."""
        commands = deps.budgets.commands
        await deps.run(commands.set, actor, None, data.budget, data.soft_limit_percent)
        deps.budgets.lookup.forget()
        return _view(None, await deps.run(commands.effective, None), None)


async def within_budget(deps: ApiDeps, actor: Actor) -> None:
    """Raises OverBudget (a 402) when the actor's budget is spent for this period."""
    await deps.budgets.admit(actor.user_id)


def _view(user: str | None, budget: EffectiveBudget, standing: Standing | None) -> BudgetView:
    view = BudgetView(
        user=user,
        budget=budget.text,
        source=budget.source,
        soft_limit_percent=budget.soft_limit_percent,
    )
    if standing is None or budget.limit is None:
        return view
    left = max(budget.limit.usd - standing.spent - standing.reserved, Decimal(0))
    view.period_start = standing.period_start.isoformat()
    view.resets_at = standing.resets_at.isoformat()
    view.spent_usd = format_usd(standing.spent)
    view.reserved_usd = format_usd(standing.reserved)
    view.remaining_usd = format_usd(left)
    return view


def _over_budget(_: Request[Any, Any, Any], error: OverBudget) -> Response[dict[str, Any]]:
    response = problem(
        402,
        str(error),
        budget=error.budget.text,
        budget_source=error.budget.source,
        spent_usd=format_usd(error.standing.spent),
        resets_at=error.standing.resets_at.isoformat(),
    )
    response.headers["Retry-After"] = str(error.standing.reset_seconds)
    return response


def _not_admin(_: Request[Any, Any, Any], error: NotAdminForBudgets) -> Response[dict[str, Any]]:
    return problem(403, str(error))


EXCEPTION_HANDLERS: dict[int | type[Exception], Any] = {
    OverBudget: _over_budget,
    NotAdminForBudgets: _not_admin,
}
