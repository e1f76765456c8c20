"""The UserLimits aggregate: an admin's per-user overrides of the service's quotas.

One aggregate per user (its id is derived from the user id), holding what an admin set: a
rate of task creations per window and a cap on tasks queued or running at once. `None` means
"the service default" (AGENTTASKS_RATE_LIMIT, AGENTTASKS_MAX_ACTIVE_TASKS). The events are a
storage contract: never rename or retype them.
"""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from agenttasks.domain.rules import check

_NAMESPACE = uuid5(NAMESPACE_URL, "https://agenttasks/user-limits")
MAX_USER_CHARS = 200
MAX_RATE_COUNT = 1_000_000
MAX_ACTIVE = 1_000_000
WINDOWS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
OFF = "off"


def limits_id(user_id: str) -> UUID:
    """The id of `user_id`'s UserLimits aggregate."""
    return uuid5(_NAMESPACE, user_id)


def parse_rate(text: str) -> tuple[int, int] | None:
    """`"120/minute"` -> (120, 60); `"off"` or `"0"` -> None; ValueError when malformed."""
    raw = text.strip().lower()
    if raw in (OFF, "0"):
        return None
    count, sep, unit = raw.partition("/")
    seconds = WINDOWS.get(unit.strip().removesuffix("s"))
    digits = count.strip()
    # ASCII digits only: str.isdigit() and int() also take other scripts' digits (U+0665 is 5),
    # which would be stored as typed and read differently by everyone else. The input is not
    # echoed back: an admin's request body is as hostile as anyone's.
    if not sep or seconds is None or not (digits.isascii() and digits.isdigit()):
        raise ValueError("a rate limit is N/second, N/minute, N/hour, N/day or off")
    number = int(count)
    if not 1 <= number <= MAX_RATE_COUNT:
        raise ValueError(f"a rate limit's count must be between 1 and {MAX_RATE_COUNT}")
    return number, seconds


class UserLimits(Aggregate):
    """What an admin set for one user; unset fields fall back to the service's defaults."""

    class Created(Aggregate.Created):
        user_id: str

    class LimitsSet(Aggregate.Event):
        """The complete overrides after the change (None: the service default)."""

        by: str
        rate_limit: str | None
        max_active_tasks: int | None

        def apply(self, limits: UserLimits) -> None:
            limits.rate_limit = self.rate_limit
            limits.max_active_tasks = self.max_active_tasks

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.rate_limit: str | None = None
        self.max_active_tasks: int | None = None

    @classmethod
    def create(cls, user_id: str) -> UserLimits:
        """A user's (empty) overrides."""
        check(0 < len(user_id) <= MAX_USER_CHARS, "a user id is 1 to 200 characters")
        return cls._create(cls.Created, id=limits_id(user_id), user_id=user_id)

    def set(self, *, by: str, rate_limit: str | None, max_active_tasks: int | None) -> None:
        """Replaces the overrides."""
        if rate_limit is not None:
            parse_rate(rate_limit)  # raises on a malformed value
            rate_limit = rate_limit.strip().lower()
        if max_active_tasks is not None and not 0 <= max_active_tasks <= MAX_ACTIVE:
            raise ValueError(f"max_active_tasks must be between 0 (no limit) and {MAX_ACTIVE}")
        self.trigger_event(
            self.LimitsSet, by=by, rate_limit=rate_limit, max_active_tasks=max_active_tasks
        )
