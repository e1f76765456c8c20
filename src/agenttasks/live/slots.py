"""A cap on the live streams one user holds open in this API process (SSE and WebSocket).

Each open stream costs a hub subscriber, a buffer and a connection; without a cap one user
could hold thousands. The count lives in process memory, so with several API replicas the cap
is per replica, until quotas move to Postgres. Everything here runs on the event loop's thread.
"""

from __future__ import annotations


class TooManyStreams(Exception):
    """The user already holds as many open streams as allowed (429)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"too many open live streams: at most {limit} per user "
            f"(SSE and WebSocket together); close one and try again"
        )


class Slot:
    """One open stream's place; `release` frees it (safe to call twice)."""

    __slots__ = ("_owner", "_slots")

    def __init__(self, slots: StreamSlots, owner: str) -> None:
        self._slots: StreamSlots | None = slots
        self._owner = owner

    def release(self) -> None:
        """Frees the place, once."""
        if self._slots is not None:
            self._slots._release(self._owner)
            self._slots = None


class StreamSlots:
    """Counts open streams per user and refuses one beyond `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def acquire(self, user: str) -> Slot:
        """A place for one more stream of `user`; TooManyStreams when they hold `limit`."""
        held = self._open.get(user, 0)
        if held >= self.limit:
            raise TooManyStreams(self.limit)
        self._open[user] = held + 1
        return Slot(self, user)

    def held(self, user: str) -> int:
        """How many streams `user` holds open."""
        return self._open.get(user, 0)

    @property
    def total(self) -> int:
        """How many streams are open, all users together (for leak checks)."""
        return sum(self._open.values())

    def _release(self, user: str) -> None:
        held = self._open.get(user, 0) - 1
        if held > 0:
            self._open[user] = held
        else:
            self._open.pop(user, None)  # no entry outlives its user's last stream
