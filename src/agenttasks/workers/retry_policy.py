"""When to try a failed attempt again: exponential backoff with jitter, honouring Retry-After."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC


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


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from `now`: delta-seconds or an HTTP date; None if unreadable."""
    value = (value or "").strip()
    if value.isdigit():  # RFC 9110 delta-seconds: digits only (no sign, no fraction)
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" or asctime: no zone stated; HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
