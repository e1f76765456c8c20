"""Per-user limits: the service's defaults, an admin's overrides (UserLimits events), a lookup.

The overrides are events in the one EventStore like everything else. The API reads them
through `LimitsLookup`, which keeps each user's effective limits for a few seconds: a change
made on one API replica holds on the others within `ttl` seconds (on its own at once).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from eventsourcing.application import AggregateNotFoundError

from agenttasks.application.store import EventStore
from agenttasks.application.tasks import Actor
from agenttasks.domain.limits import UserLimits, limits_id, parse_rate


@dataclass(frozen=True)
class Limits:
    """One user's effective limits: creations per window (None: off), active tasks (0: off)."""

    rate: tuple[int, int] | None  # (count, window seconds)
    max_active: int
    rate_source: str = "default"  # "default" or "user"
    active_source: str = "default"

    @property
    def rate_text(self) -> str:
        """The rate as a setting spells it: 120/minute, or off."""
        if self.rate is None:
            return "off"
        count, seconds = self.rate
        unit = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}[seconds]
        return f"{count}/{unit}"


class NotAdmin(PermissionError):
    """Only an admin sets another user's limits."""


class UserLimitsCommands:
    """Sets and reads users' overrides (admins set; a user reads their own)."""

    def __init__(self, store: EventStore, defaults: Limits) -> None:
        self.store = store
        self.defaults = defaults

    def set(
        self, actor: Actor, user_id: str, rate_limit: str | None, max_active_tasks: int | None
    ) -> int:
        """Replaces `user_id`'s overrides; returns the position of the event."""
        if not actor.is_admin:
            raise NotAdmin("only an admin sets a user's limits")
        limits = self._load(user_id) or UserLimits.create(user_id)
        limits.set(by=actor.user_id, rate_limit=rate_limit, max_active_tasks=max_active_tasks)
        recordings = self.store.save(limits)
        return recordings[-1].notification.id

    def effective(self, user_id: str) -> Limits:
        """The limits that hold for `user_id`: their overrides over the service's defaults."""
        found = self._load(user_id)
        if found is None:
            return self.defaults
        rate, rate_source = self.defaults.rate, "default"
        if found.rate_limit is not None:
            rate, rate_source = parse_rate(found.rate_limit), "user"
        active, active_source = self.defaults.max_active, "default"
        if found.max_active_tasks is not None:
            active, active_source = found.max_active_tasks, "user"
        return Limits(rate, active, rate_source, active_source)

    def _load(self, user_id: str) -> UserLimits | None:
        try:
            found: object = self.store.repository.get(limits_id(user_id))
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, UserLimits) else None


class LimitsLookup:
    """Each user's effective limits, kept `ttl` seconds (at most `size` users) per process."""

    def __init__(
        self,
        load: Callable[[str], Limits],
        ttl: float = 5.0,
        size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._kept: OrderedDict[str, tuple[float, Limits]] = OrderedDict()
        self._lock = threading.Lock()  # loads run on the API's command threads

    def cached(self, user_id: str) -> Limits | None:
        """The user's limits if kept and fresh (no I/O: safe on the event loop)."""
        with self._lock:
            kept = self._kept.get(user_id)
        if kept is not None and self._clock() - kept[0] < self._ttl:
            return kept[1]
        return None

    def get(self, user_id: str) -> Limits:
        """The user's limits, loaded from the store when not kept or kept too long."""
        found = self.cached(user_id)
        if found is not None:
            return found
        now = self._clock()
        limits = self._load(user_id)
        with self._lock:
            self._kept[user_id] = (now, limits)
            self._kept.move_to_end(user_id)
            while len(self._kept) > self._size:
                self._kept.popitem(last=False)
        return limits

    def forget(self, user_id: str) -> None:
        """Drops what is kept for `user_id` (this process set new limits)."""
        with self._lock:
            self._kept.pop(user_id, None)
