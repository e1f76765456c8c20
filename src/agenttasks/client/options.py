"""The client's limits: timeouts, the size of one stream message, how long to keep reconnecting."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from agenttasks.client.errors import ApiError
from agenttasks.client.sse import StreamError, backoff


class RetryableStatus(Exception):
    """A stream answered 502/503/504: the API is restarting or a proxy lost it; try again."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class Options:
    """Limits of one client; the defaults suit a service on the same network."""

    timeout: float = 30.0  # seconds for a query or a command
    # Seconds a stream may stay silent: the API sends a keep-alive every 15 s, so a silent
    # connection is a dead one, and follow reconnects.
    stream_timeout: float = 45.0
    max_message_bytes: int = 16 * 1024 * 1024  # one SSE message (a task's result is in one)
    max_reconnects: int = 8  # in a row without an update; then follow raises the last error
    max_backoff: float = 5.0  # seconds between reconnects, at most

    def __post_init__(self) -> None:
        if not (self.timeout > 0 and self.stream_timeout > 0 and self.max_backoff >= 0):
            raise ValueError("timeouts must be positive and max_backoff not negative")
        if self.max_message_bytes < 1024 or self.max_reconnects < 0:
            raise ValueError("max_message_bytes must be at least 1024, max_reconnects >= 0")

    @property
    def stream_timeouts(self) -> httpx.Timeout:
        """Connect like a query, then wait `stream_timeout` for each chunk."""
        return httpx.Timeout(self.timeout, read=self.stream_timeout)

    def check_reconnect(self, failures: int, error: BaseException | None) -> int:
        """`failures` if one more reconnect is allowed; else raises what ended the last try."""
        if failures <= self.max_reconnects:
            return failures
        if isinstance(error, RetryableStatus):
            raise error.error
        if error is not None:
            raise error
        raise StreamError("the task's stream keeps ending without an update")


class Reconnects:
    """The reconnect count of one follow: failures in a row, and the pause each one earns."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.failures = 0
        self.received = False

    def connecting(self) -> None:
        """A new connection: it has brought nothing yet."""
        self.received = False

    def passed(self) -> None:
        """An update came: the count starts again."""
        self.received, self.failures = True, 0

    def after_error(self, error: BaseException) -> float:
        """Seconds to wait after a failed connection; raises once reconnects are used up."""
        self.failures = self.options.check_reconnect(self.failures + 1, error)
        return backoff(self.failures, self.options.max_backoff)

    def after_end(self) -> float:
        """Seconds to wait after a stream ended: none if it brought updates."""
        if self.received:
            return 0.0
        self.failures = self.options.check_reconnect(self.failures + 1, None)
        return backoff(self.failures, self.options.max_backoff)
