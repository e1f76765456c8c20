"""nats-py's errors in our words: callers outside bus/ tell them apart without importing nats."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from nats.errors import Error as NatsError
from nats.js.errors import APIError, ServiceUnavailableError

from agenttasks.bus.consumers import BusUnavailable


class BusRefused(RuntimeError):
    """JetStream refused a request (its error code is `code`), e.g. too many stream replicas."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"JetStream refused the request (error {code})")
        self.code = code


class BusDenied(RuntimeError):
    """NATS refused the connection or a request: credentials or permissions."""


@contextmanager
def translated() -> Iterator[None]:
    """Raises BusUnavailable, BusRefused or BusDenied for nats-py's errors (timeouts pass)."""
    try:
        yield
    except TimeoutError:  # nats-py's timeouts are TimeoutErrors too: the caller's to handle
        raise
    except ServiceUnavailableError as error:  # JetStream has no leader yet: try again later
        raise BusUnavailable("JetStream is not available yet") from error
    except APIError as error:
        raise BusRefused(error.err_code) from error
    except NatsError as error:
        raise BusDenied(type(error).__name__) from error
