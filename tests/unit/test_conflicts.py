"""The one conflict-retry loop: a save that lost the race is tried again, a bounded number of times."""

from __future__ import annotations

import pytest
from eventsourcing.persistence import IntegrityError

from agenttasks.application.conflicts import ConcurrencyError, retry_on_conflict
from agenttasks.application.tasks import ConcurrencyError as TasksConcurrencyError


def test_a_lost_race_is_tried_again_until_the_save_wins() -> None:
    calls = []

    def attempt() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise IntegrityError("someone appended first")
        return "saved"

    assert retry_on_conflict(attempt, "task x") == "saved"
    assert len(calls) == 3


def test_endless_conflicts_end_in_our_error_after_the_retries() -> None:
    calls = []

    def attempt() -> None:
        calls.append(1)
        raise IntegrityError("someone appended first")

    with pytest.raises(ConcurrencyError, match="task x kept changing; try again"):
        retry_on_conflict(attempt, "task x", retries=4)
    assert len(calls) == 4


def test_other_errors_are_not_retried() -> None:
    calls = []

    def attempt() -> None:
        calls.append(1)
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        retry_on_conflict(attempt, "task x")
    assert len(calls) == 1


def test_the_api_still_finds_the_error_where_it_was() -> None:
    assert TasksConcurrencyError is ConcurrencyError
