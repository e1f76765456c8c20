"""Retrying a command whose save lost the race for its aggregate to another writer."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from eventsourcing.persistence import IntegrityError

T = TypeVar("T")

CONFLICT_RETRIES = 8


class ConcurrencyError(RuntimeError):
    """A command lost the race for its aggregate too many times in a row."""


def retry_on_conflict(attempt: Callable[[], T], what: str, retries: int = CONFLICT_RETRIES) -> T:
    """Runs `attempt` (load, decide, save) again while its save conflicts, up to `retries` times.

    A conflict means someone else appended first: the next attempt loads afresh and lets the
    domain's rules decide again (a cancel racing a progress report, a revise racing an archive).
    """
    for _ in range(retries):
        try:
            return attempt()
        except IntegrityError:
            continue
    raise ConcurrencyError(f"{what} kept changing; try again")
