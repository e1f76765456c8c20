"""A small per-process cache of something looked up per user: kept `ttl` seconds, `size` users."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class KeptPerUser(Generic[T]):
    """Each user's value from `load`, kept `ttl` seconds (at most `size` users: oldest out)."""

    def __init__(
        self,
        load: Callable[[str], T],
        ttl: float = 5.0,
        size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._kept: OrderedDict[str, tuple[float, T]] = OrderedDict()
        self._lock = threading.Lock()  # loads run on command threads

    def cached(self, user_id: str) -> T | None:
        """The user's value if kept and fresh (no I/O: safe on the event loop)."""
        with self._lock:
            kept = self._kept.get(user_id)
        if kept is not None and self._clock() - kept[0] < self._ttl:
            return kept[1]
        return None

    def get(self, user_id: str) -> T:
        """The user's value, loaded when not kept or kept too long."""
        found = self.cached(user_id)
        if found is not None:
            return found
        now = self._clock()
        value = self._load(user_id)
        with self._lock:
            self._kept[user_id] = (now, value)
            self._kept.move_to_end(user_id)
            while len(self._kept) > self._size:
                self._kept.popitem(last=False)
        return value

    def forget(self, user_id: str | None = None) -> None:
        """Drops what is kept for `user_id` (None: for everyone)."""
        with self._lock:
            if user_id is None:
                self._kept.clear()
            else:
                self._kept.pop(user_id, None)
