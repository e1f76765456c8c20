"""Vocabulary and the one exception type shared by the aggregates."""

from __future__ import annotations

TASK_TYPES = ("summary", "research", "content_generation", "data_analysis", "custom")
PRIORITIES = ("low", "normal", "high", "urgent")
STATUSES = ("pending", "running", "completed", "failed", "cancelled")
FINISHED = frozenset({"completed", "failed", "cancelled"})


class RuleViolation(Exception):
    """A command the aggregate's rules refuse; the message says why, for a person to read."""


def check(condition: bool, reason: str) -> None:
    """Raises RuleViolation with `reason` unless `condition` holds."""
    if not condition:
        raise RuleViolation(reason)
