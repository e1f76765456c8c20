"""An append that gave up waiting for the events table's lock: nothing of it was stored.

Every append takes the events table's EXCLUSIVE lock (store.py). A session holding a
conflicting lock (an open deletion, an operator's `LOCK TABLE` in psql) would otherwise make
every create, start and completion wait until it ends; the append's `lock_timeout`
(AGENTTASKS_APPEND_LOCK_TIMEOUT) turns that wait into this error, which the API answers with
503 and the worker retries.
"""

from __future__ import annotations

import math

from eventsourcing.persistence import PersistenceError

# Postgres' lock_not_available: a statement's lock_timeout passed before it got its lock.
LOCK_NOT_AVAILABLE = "55P03"


class AppendLockTimeout(PersistenceError):
    """An append waited its lock timeout for the events table and stored nothing."""

    # Not an OperationalError: the store's retry of a lost session must not wait it out again.

    def __init__(self, waited: float) -> None:
        super().__init__(
            f"the event store is busy (its events table stayed locked for {waited:g} s); "
            "nothing was stored, try again"
        )
        self.waited = waited

    @property
    def retry_after(self) -> int:
        """Whole seconds a caller should wait before trying again (at least 1)."""
        return max(1, math.ceil(self.waited))


def lock_timed_out(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, is Postgres' lock_not_available."""
    seen: BaseException | None = error
    for _ in range(8):  # a cause chain is short; a cycle must not loop for ever
        if seen is None:
            return False
        if getattr(seen, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            return True
        seen = seen.__cause__
    return False


def timeout_setting(milliseconds: int) -> str:
    """The value of Postgres' lock_timeout for this many milliseconds (at least 1)."""
    return f"{max(1, int(milliseconds))}ms"
