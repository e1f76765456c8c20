"""Budgets: how much a user may spend on models per UTC day or month, set by admins.

One `Budget` aggregate per user and one for the default (every user without their own). A
budget is text as the setting spells it: `5.00/day`, `50/month`, or `off`; `None` means "fall
back" (a user's to the default budget, the default to AGENTTASKS_DEFAULT_BUDGET). A
`BudgetAlert` is created once per user and period when spending passes the soft limit: its id
is derived from both, so a second worker reaching the same soft limit cannot record it twice.
The events are a storage contract: never rename or retype them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from agenttasks.domain.rules import check

_NAMESPACE = uuid5(NAMESPACE_URL, "https://agenttasks/budgets")
MAX_USER_CHARS = 200
MAX_BUDGET_USD = Decimal(10_000_000)
MAX_BUDGET_CHARS = 40
PERIODS = ("day", "month")
OFF = "off"
DEFAULT_SCOPE = "default"
# The published kind of a BudgetAlert (bus subject agenttasks.events.budget.<kind>, and the
# webhook event type budget.<kind>).
SOFT_LIMIT_REACHED = "soft_limit_reached"
_BUDGET = re.compile(r"^(\d{1,8}(?:\.\d{1,6})?)\s*/\s*(day|month)s?$")


@dataclass(frozen=True)
class Limit:
    """A budget in force: at most `usd` per UTC `period` ("day" or "month")."""

    usd: Decimal
    period: str

    @property
    def text(self) -> str:
        return f"{self.usd}/{self.period}"


def parse_budget(text: str) -> Limit | None:
    """`"5.00/day"` -> Limit(5.00, day); `"off"` -> None; ValueError (our words) otherwise."""
    raw = text.strip().lower()
    if raw == OFF:
        return None
    found = _BUDGET.match(raw) if len(raw) <= MAX_BUDGET_CHARS else None
    if found is None:
        raise ValueError(
            "a budget is USD per day or month, such as 5.00/day or 50/month "
            "(at most 6 decimal places), or off"
        )
    usd = Decimal(found.group(1))
    if not 0 < usd <= MAX_BUDGET_USD:
        raise ValueError(f"a budget must be above 0 and at most {MAX_BUDGET_USD} USD")
    return Limit(usd, found.group(2))


def period_start(period: str, now: datetime) -> datetime:
    """The UTC midnight that starts `now`'s day, or its month's first."""
    utc = now.astimezone(UTC)
    day = utc.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if period == "day" else day.replace(day=1)


def period_end(period: str, now: datetime) -> datetime:
    """When the period holding `now` ends (the next UTC midnight, or the next month's first)."""
    start = period_start(period, now)
    if period == "day":
        return datetime.fromordinal(start.toordinal() + 1).replace(tzinfo=UTC)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def budget_id(user_id: str | None) -> UUID:
    """The id of `user_id`'s Budget aggregate; None: the default budget's."""
    return uuid5(_NAMESPACE, DEFAULT_SCOPE if user_id is None else f"user:{user_id}")


def alert_id(user_id: str, started: datetime) -> UUID:
    """The id of the soft-limit alert of `user_id`'s period starting at `started`."""
    return uuid5(_NAMESPACE, f"alert:{user_id}:{started.isoformat()}")


class Budget(Aggregate):
    """What an admin set for one user (or the default): a budget, a soft limit; None: inherit."""

    class Created(Aggregate.Created):
        user_id: str | None  # None: the default budget

    class BudgetSet(Aggregate.Event):
        """The complete setting after the change (None: fall back)."""

        by: str
        budget: str | None
        soft_limit_percent: int | None

        def apply(self, budget: Budget) -> None:
            budget.budget = self.budget
            budget.soft_limit_percent = self.soft_limit_percent

    def __init__(self, user_id: str | None) -> None:
        self.user_id = user_id
        self.budget: str | None = None
        self.soft_limit_percent: int | None = None

    @classmethod
    def create(cls, user_id: str | None) -> Budget:
        """A user's (or the default's) empty setting."""
        if user_id is not None:
            check(0 < len(user_id) <= MAX_USER_CHARS, "a user id is 1 to 200 characters")
        return cls._create(cls.Created, id=budget_id(user_id), user_id=user_id)

    def set(self, *, by: str, budget: str | None, soft_limit_percent: int | None) -> None:
        """Replaces the setting."""
        if budget is not None:
            parse_budget(budget)  # raises on a malformed value
            budget = budget.strip().lower().replace(" ", "")
        if soft_limit_percent is not None and not 1 <= soft_limit_percent <= 100:
            raise ValueError("soft_limit_percent must be between 1 and 100")
        self.trigger_event(
            self.BudgetSet, by=by, budget=budget, soft_limit_percent=soft_limit_percent
        )


class BudgetAlert(Aggregate):
    """A user's spending passed the soft limit of one period (created once per period)."""

    # Its creation is the fact: the soft limit was reached (an alert has no other event).
    class Created(Aggregate.Created):
        user_id: str
        period: str  # day or month
        period_start: datetime
        limit_usd: str
        soft_limit_usd: str
        spent_usd: str
        task_id: UUID  # the task whose model call passed it

    def __init__(
        self,
        user_id: str,
        period: str,
        period_start: datetime,
        limit_usd: str,
        soft_limit_usd: str,
        spent_usd: str,
        task_id: UUID,
    ) -> None:
        self.user_id = user_id
        self.period = period
        self.period_start = period_start
        self.limit_usd = limit_usd
        self.soft_limit_usd = soft_limit_usd
        self.spent_usd = spent_usd
        self.task_id = task_id

    @classmethod
    def reached(
        cls,
        *,
        user_id: str,
        limit: Limit,
        started: datetime,
        soft_limit_usd: Decimal,
        spent_usd: Decimal,
        task_id: UUID,
    ) -> BudgetAlert:
        """The alert of `user_id`'s period starting at `started`."""
        return cls._create(
            cls.Created,
            id=alert_id(user_id, started),
            user_id=user_id,
            period=limit.period,
            period_start=started,
            limit_usd=str(limit.usd),
            soft_limit_usd=str(soft_limit_usd),
            spent_usd=str(spent_usd),
            task_id=task_id,
        )
