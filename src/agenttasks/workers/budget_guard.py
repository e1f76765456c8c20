"""Budgets and per-task caps around every model call (the worker's CallBudget).

Before a call: the task's own caps (`max_cost`, `max_total_tokens` in its config, and
AGENTTASKS_MAX_TASK_COST), then the user's budget, through a reservation in the shared
ledger (application/spend_ledger.py) of the most the call can cost. After it: the reservation
is settled with the call's recorded cost, or released if the call failed. A call that does not
fit raises BudgetExceeded: it is not made, and the task fails with `budget_exceeded`, keeping the
events it wrote (notes, partial results, the model calls) so far.

A task cap lowers a call's max_tokens to what the cap leaves, and ends the task when that is
too little for a call (MIN_CALL_TOKENS). A budget is not lowered into: a call whose whole
reservation does not fit is refused. A call's most is its prompt, estimated from its
characters (one token per three characters, plus a per-call allowance: English prose runs
about four characters a token, so the estimate errs high), plus its whole `max_tokens` of
output, at the model's highest price. A model with no known price is refused when a budget or
a max_cost applies: its spending could not be counted (max_total_tokens alone needs no price).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from agenttasks.application.budgets import EffectiveBudget
from agenttasks.application.prices import format_usd
from agenttasks.application.spend_ledger import Hold, Refused, SpendLedger
from agenttasks.application.task_configs import ConfigError, cost_of
from agenttasks.workers.call_budget import (
    BudgetExceeded,
    PlannedCall,
    RecordedCall,
    Reservation,
)

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 3
TOKENS_PER_CALL = 16  # the chat format's own tokens around the messages
# A task cap that leaves a call fewer output tokens than this ends the task instead.
MIN_CALL_TOKENS = 16


def estimated_prompt_tokens(prompt_chars: int) -> int:
    """An estimate of a prompt's tokens that errs high for prose."""
    return -(-prompt_chars // CHARS_PER_TOKEN) + TOKENS_PER_CALL


@dataclass
class _Held(Reservation):
    hold: Hold
    budget: EffectiveBudget


class BudgetGuard:
    """Refuses a model call over the task's caps or the user's budget; counts what calls cost."""

    def __init__(
        self,
        ledger: SpendLedger,
        budget_of: Callable[[str], EffectiveBudget],
        record_alert: Callable[..., None],
        *,
        max_task_cost: Decimal | None = None,
    ) -> None:
        self._ledger = ledger
        self._budget_of = budget_of  # may read the event store: run in a thread
        self._record_alert = record_alert  # saves a BudgetAlert (in a thread)
        self._max_task_cost = max_task_cost

    async def reserve(self, call: PlannedCall) -> Reservation:
        """Checks the task's caps and reserves the call's most against the user's budget."""
        prompt = estimated_prompt_tokens(call.prompt_chars)
        tokens = self._within_task_caps(call, prompt)
        most = call.price.ceiling(prompt, tokens) if call.price is not None else None
        budget = await asyncio.to_thread(self._budget_of, call.user)
        if budget.limit is None:
            return _allowing(Reservation(), tokens, call)
        if most is None:
            raise BudgetExceeded(
                f"the model {call.model} has no known price, and your budget of "
                f"{budget.text} USD applies: an operator can set its price in AGENTTASKS_PRICES"
            )
        taken = await self._ledger.reserve(
            call.user, budget.limit, call.task_id, call.attempt, most
        )
        if isinstance(taken, Refused):
            standing = taken.standing
            raise BudgetExceeded(
                f"your budget of {budget.text} USD would be passed by the next model call "
                f"(up to {format_usd(most)} USD): {format_usd(standing.spent)} USD spent and "
                f"{format_usd(standing.reserved)} USD reserved by calls under way this "
                f"{budget.limit.period}; it resets at {standing.resets_at.isoformat()}"
            )
        return _allowing(_Held(taken, budget), tokens, call)

    async def settle(self, reservation: Reservation, call: RecordedCall | None) -> None:
        """Replaces the reservation by the call's cost (released if the call failed)."""
        if not isinstance(reservation, _Held):
            return
        hold, budget = reservation.hold, reservation.budget
        if call is None:
            await self._ledger.release(hold)
            return
        # No usable usage: the call may have cost its whole reservation, so that is counted.
        cost = call.cost_usd if call.cost_usd is not None else hold.amount
        limit = budget.limit
        assert limit is not None
        soft_usd = limit.usd * budget.soft_limit_percent / 100
        settled = await self._ledger.settle(hold, cost, (limit.period, soft_usd))
        if settled.soft_reached_now and settled.period_start is not None:
            try:
                await asyncio.to_thread(
                    self._record_alert,
                    user_id=hold.user,
                    limit=limit,
                    started=settled.period_start,
                    soft_limit_usd=soft_usd,
                    spent_usd=settled.spent.get(limit.period, cost),
                    task_id=hold.task_id,
                )
            except Exception:  # the call is settled; a lost alert is logged, not fatal
                log.exception("could not record the soft-limit alert of %s", hold.user)

    def _within_task_caps(self, call: PlannedCall, prompt: int) -> int:
        """The call's max_tokens, lowered to what the task's caps leave; refused below a few."""
        tokens = call.max_tokens
        tokens_cap = _int_or_none(call.task_config.get("max_total_tokens"))
        if tokens_cap is not None:
            left = tokens_cap - call.task_tokens - prompt
            if left < MIN_CALL_TOKENS:
                raise BudgetExceeded(
                    f"the task reached its max_total_tokens of {tokens_cap}: it has used "
                    f"{call.task_tokens} tokens, and the next model call's prompt alone is about "
                    f"{prompt}"
                )
            tokens = min(tokens, left)
        cap, name = self._cost_cap(call.task_config.get("max_cost"))
        if cap is None:
            return tokens
        if call.price is None:
            raise BudgetExceeded(
                f"the model {call.model} has no known price, and the task's {name} of "
                f"{format_usd(cap)} USD applies: an operator can set its price in "
                "AGENTTASKS_PRICES"
            )
        left_usd = cap - call.task_spent_usd - call.price.ceiling(prompt, 0)
        per_token = call.price.ceiling(0, 1_000_000) / 1_000_000
        affordable = int(left_usd / per_token) if per_token > 0 else tokens
        if affordable < MIN_CALL_TOKENS:
            raise BudgetExceeded(
                f"the task reached its {name} of {format_usd(cap)} USD: it has spent "
                f"{format_usd(call.task_spent_usd)} USD, which leaves too little for another "
                "model call"
            )
        return min(tokens, affordable)

    def _cost_cap(self, asked: Any) -> tuple[Decimal | None, str]:
        given: Decimal | None = None
        if asked is not None:
            try:
                given = cost_of(asked)
            except ConfigError:  # checked at create; a stored config is trusted no further
                given = None
        ceiling = self._max_task_cost
        if given is not None and (ceiling is None or given <= ceiling):
            return given, "max_cost"
        if ceiling is not None:
            return ceiling, "cost cap (AGENTTASKS_MAX_TASK_COST)"
        return None, "max_cost"


def _allowing(reservation: Reservation, tokens: int, call: PlannedCall) -> Reservation:
    if tokens < call.max_tokens:
        reservation.max_tokens = tokens
    return reservation


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
