"""One dependency's connection state: logged when it is lost and when it is back, with backoff.

A role that loses Postgres or NATS retries until the server is back (`up` restarts its embedded
ones). Logging every attempt filled the screen with the same warning five times a second; this
logs the change of state only (lost, then restored with how long it took) and hands out the
delay before the next attempt: 0.2 s doubling to 5 s.
"""

from __future__ import annotations

import logging
import time

FIRST_DELAY_SECONDS = 0.2
MAX_DELAY_SECONDS = 5.0


def backoff(attempt: int) -> float:
    """Seconds to wait before retry number `attempt` (0: the first) of a lost connection."""
    return float(min(FIRST_DELAY_SECONDS * 2 ** min(attempt, 16), MAX_DELAY_SECONDS))


class Outage:
    """Tracks whether `what` is reachable; logs each change once and paces the retries."""

    def __init__(self, what: str, logger: logging.Logger) -> None:
        self.what = what
        self.log = logger
        self.attempts = 0
        self.since: float | None = None

    @property
    def lost(self) -> bool:
        """Whether the last attempt failed and none has succeeded since."""
        return self.since is not None

    def failed(self, error: BaseException | str) -> float:
        """Records a failed attempt; returns the seconds to wait before the next one."""
        if self.since is None:
            self.since = time.monotonic()
            self.log.warning("%s lost (%s); retrying with backoff", self.what, _brief(error))
        delay = backoff(self.attempts)
        self.attempts += 1
        return delay

    def restored(self) -> None:
        """Records a success; logs the recovery if the connection had been lost."""
        if self.since is not None:
            elapsed = time.monotonic() - self.since
            self.log.warning(
                "%s restored after %.1fs (%d attempts)", self.what, elapsed, self.attempts
            )
        self.since = None
        self.attempts = 0


def _brief(error: BaseException | str) -> str:
    # psycopg's messages run over several lines (hints, the socket path): the first is enough.
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
