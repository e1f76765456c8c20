"""The hook around every model call: reserve before it, settle after it.

`agents/common.py: ask_model` is the only caller of `LanguageModel.complete`, and it asks the
worker's CallBudget first: `reserve` may refuse the call (BudgetExceeded fails the task with
error_kind `budget_exceeded`, keeping what it produced so far); `settle` runs after the call's
Task.ModelCalled event is stored, with what the call actually used (None: the call failed).
Without budgets (the default) NoBudget allows everything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

from agenttasks.application.prices import ModelPrice
from agenttasks.workers.errors import AgentError

BUDGET_EXCEEDED = "budget_exceeded"


@dataclass(frozen=True)
class PlannedCall:
    """A model call about to be made, and what its task has spent before it."""

    task_id: UUID
    attempt: int
    user: str
    task_type: str
    template_id: UUID | None
    task_config: Mapping[str, Any]
    model: str
    provider: str
    max_tokens: int  # the capped max_tokens sent with the call
    prompt_chars: int  # of the system and user prompts: an estimate of the prompt's tokens
    price: ModelPrice | None  # None: the model's price is unknown
    task_spent_usd: Decimal  # the priced calls of the task so far, every attempt
    task_tokens: int  # prompt + completion tokens of the task so far, every attempt
    task_unpriced_calls: int


@dataclass(frozen=True)
class RecordedCall:
    """A model call as its Task.ModelCalled event records it."""

    model: str
    provider: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    usage: str  # reported | missing | invalid | capped
    latency_ms: int
    cost_usd: Decimal | None  # None: no price, or no usable usage
    price_source: str
    price_version: str | None


class Reservation:
    """What `reserve` set aside for one call; a budget returns its own subclass."""

    # Lower than the planned call's: send at most this many (a per-task cap's remainder).
    max_tokens: int | None = None


class BudgetExceeded(AgentError):
    """The call would go over a budget or a task's cap: it is not made, the task fails."""

    def __init__(self, message: str) -> None:
        super().__init__(BUDGET_EXCEEDED, message, transient=False)


class CallBudget(Protocol):
    """Spending checks around each model call (BUD's budgets implement it)."""

    async def reserve(self, call: PlannedCall) -> Reservation: ...

    async def settle(self, reservation: Reservation, call: RecordedCall | None) -> None: ...


class NoBudget:
    """No budget: every call may go ahead."""

    async def reserve(self, call: PlannedCall) -> Reservation:
        """Allows the call."""
        return Reservation()

    async def settle(self, reservation: Reservation, call: RecordedCall | None) -> None:
        """Nothing was set aside."""
