"""When to try a failed attempt again: exponential backoff with jitter, honouring Retry-After."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delay before automatic retry n+1: base * 2^n, capped, with "equal jitter".

    Half the delay is fixed and half random, so retries of many tasks that failed together
    (an LLM outage) spread out instead of returning at the same instant, yet never come back
    sooner than half the nominal delay.
    """

    base: float = 1.0
    cap: float = 300.0

    def delay(self, retries_so_far: int, retry_after: float | None = None) -> float:
        """Seconds to wait; at least what the server asked for with Retry-After."""
        nominal = min(self.cap, self.base * 2.0**retries_so_far)
        jittered = nominal / 2 + random.uniform(0, nominal / 2)
        return max(jittered, min(retry_after or 0.0, self.cap))

    def for_error(self, retry_after: float | None) -> Callable[[int], float]:
        """The `retry_in` callback TaskCommands.fail expects."""
        return lambda retries_so_far: self.delay(retries_so_far, retry_after)
