"""Per-user limits: the service's defaults, an admin's overrides (UserLimits events), a lookup.

The overrides are events in the one EventStore like everything else. The API reads them
through `LimitsLookup`, which keeps each user's effective limits for a few seconds: a change
made on one API replica holds on the others within `ttl` seconds (on its own at once).
"""

from __future__ import annotations

from dataclasses import dataclass

from eventsourcing.application import AggregateNotFoundError

from agenttasks.application.kept import KeptPerUser
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


class LimitsLookup(KeptPerUser[Limits]):
    """Each user's effective limits, kept `ttl` seconds (at most `size` users) per process."""
