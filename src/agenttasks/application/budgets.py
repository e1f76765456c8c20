"""Budgets as admins set them (Budget events) over the settings' default, and a lookup.

A user's budget is their own if an admin set one, else the default budget an admin set, else
AGENTTASKS_DEFAULT_BUDGET; the soft limit falls back the same way. The API and the workers
read budgets through `BudgetLookup`, which keeps each user's for a few seconds: a change made
in one process holds in the others within `ttl` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from agenttasks.application.kept import KeptPerUser
from agenttasks.application.prices import format_usd
from agenttasks.application.spend_ledger import SpendLedger, Standing
from agenttasks.application.store import EventStore
from agenttasks.application.tasks import Actor
from agenttasks.domain.budget import (
    MAX_USER_CHARS,
    OFF,
    Budget,
    BudgetAlert,
    Limit,
    budget_id,
    parse_budget,
)


@dataclass(frozen=True)
class EffectiveBudget:
    """The budget that holds for a user (None: no budget) and where it comes from."""

    limit: Limit | None
    source: str  # "user", "default" (an admin's default budget) or "setting"
    soft_limit_percent: int

    @property
    def text(self) -> str:
        """The budget as a setting spells it: 5.00/day, or off."""
        return "off" if self.limit is None else self.limit.text


@dataclass(frozen=True)
class BudgetDefaults:
    """The settings' budget (AGENTTASKS_DEFAULT_BUDGET) and soft limit."""

    budget: str = "off"
    soft_limit_percent: int = 80


class NotAdminForBudgets(PermissionError):
    """Only an admin sets a budget."""


class BudgetCommands:
    """Sets budgets (admins) and resolves the one that holds for a user."""

    def __init__(self, store: EventStore, defaults: BudgetDefaults) -> None:
        self.store = store
        self.defaults = defaults

    def set(
        self, actor: Actor, user_id: str | None, budget: str | None, soft_limit_percent: int | None
    ) -> int:
        """Replaces `user_id`'s budget (None: the default budget); the event's position."""
        if not actor.is_admin:
            raise NotAdminForBudgets("only an admin sets a budget")
        if user_id is not None:
            check_user_id(user_id)
        found = self._load(user_id) or Budget.create(user_id)
        canonical = None if budget is None else canonical_budget(budget)
        found.set(by=actor.user_id, budget=canonical, soft_limit_percent=soft_limit_percent)
        recordings = self.store.save(found)
        return recordings[-1].notification.id

    def effective(self, user_id: str | None) -> EffectiveBudget:
        """The budget that holds for `user_id` (None: for a user with no budget of their own)."""
        user = self._load(user_id) if user_id is not None else None
        default = self._load(None)
        budget, source = self.defaults.budget, "setting"
        percent = self.defaults.soft_limit_percent
        for level, found in (("default", default), ("user", user)):  # the later one wins
            if found is not None and found.budget is not None:
                budget, source = found.budget, level
            if found is not None and found.soft_limit_percent is not None:
                percent = found.soft_limit_percent
        return EffectiveBudget(parse_budget(budget), source, percent)

    def _load(self, user_id: str | None) -> Budget | None:
        try:
            found: object = self.store.repository.get(budget_id(user_id))
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, Budget) else None


def check_user_id(user_id: str) -> None:
    """ValueError (our words) for a user id the ledger cannot key: empty, long, or unprintable."""
    # A NUL reached the ledger's text columns as a 500 (PostgreSQL refuses it), after the
    # Budget event was stored; other control characters would be stored and echoed.
    if not 0 < len(user_id) <= MAX_USER_CHARS or not user_id.isprintable():
        raise ValueError(f"a user id is 1 to {MAX_USER_CHARS} printable characters")


def canonical_budget(text: str) -> str:
    """A budget as it is stored: `5.00/day`, `50/month` or `off`; ValueError (our words)."""
    # Python's \d matches any script's digits (an Arabic-Indic five read as 5, stored as
    # typed): only ASCII reaches the parser, and the parsed budget is stored, spelled one way.
    limit = parse_budget(text if text.isascii() else "not ascii")
    return OFF if limit is None else limit.text


class BudgetLookup(KeptPerUser[EffectiveBudget]):
    """Each user's effective budget, kept `ttl` seconds (at most `size` users) per process.

    `forget(None)` drops every user's: the admin's default budget changed.
    """


class OverBudget(Exception):
    """A create or retry by a user whose budget is spent for this period."""

    def __init__(self, budget: EffectiveBudget, standing: Standing) -> None:
        assert budget.limit is not None
        super().__init__(
            f"your budget of {budget.text} USD is spent for this {budget.limit.period} "
            f"({format_usd(standing.spent)} USD); it resets at {standing.resets_at.isoformat()}"
        )
        self.budget = budget
        self.standing = standing


@dataclass
class Budgets:
    """What the API needs of budgets: the commands, each user's budget kept briefly, the ledger."""

    commands: BudgetCommands
    lookup: BudgetLookup
    ledger: SpendLedger

    async def standing(self, user: str) -> tuple[EffectiveBudget, Standing | None]:
        """The user's budget and where they stand in its period (None: no budget)."""
        check_user_id(user)
        # A create with budgets off costs a dictionary lookup, not a thread hop.
        budget = self.lookup.cached(user)
        if budget is None:
            budget = await asyncio.to_thread(self.lookup.get, user)
        if budget.limit is None:
            return budget, None
        return budget, await self.ledger.standing(user, budget.limit)

    async def admit(self, user: str) -> None:
        """Raises OverBudget when `user` has spent their budget for this period."""
        budget, standing = await self.standing(user)
        if budget.limit is not None and standing is not None and standing.spent >= budget.limit.usd:
            raise OverBudget(budget, standing)


def alert_recorder(store: EventStore) -> Callable[..., None]:
    """Saves a BudgetAlert; a second one for the same user and period is dropped."""

    def record(**fields: Any) -> None:
        # IntegrityError: recorded already (by another worker): once per period.
        with contextlib.suppress(IntegrityError):
            store.save(BudgetAlert.reached(**fields))

    return record
