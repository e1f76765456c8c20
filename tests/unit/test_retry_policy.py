"""Backoff: grows exponentially, is jittered, is capped, honours Retry-After."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agenttasks.workers.retry_policy import Backoff, retry_after_seconds


@given(st.integers(0, 30))
def test_the_delay_lies_between_half_and_all_of_the_nominal_delay(retries: int) -> None:
    backoff = Backoff(base=1.0, cap=300.0)
    nominal = min(300.0, 2.0**retries)
    assert nominal / 2 <= backoff.delay(retries) <= nominal


def test_delays_are_jittered_so_simultaneous_failures_spread_out() -> None:
    backoff = Backoff(base=1.0)
    assert len({backoff.delay(5) for _ in range(50)}) > 10


@given(st.integers(0, 10), st.floats(0, 1000))
def test_a_retry_after_is_honoured_up_to_the_cap(retries: int, retry_after: float) -> None:
    backoff = Backoff(base=1.0, cap=300.0)
    assert backoff.delay(retries, retry_after) >= min(retry_after, 300.0)
    assert backoff.delay(retries, retry_after) <= 300.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("120", 120.0), ("Thu, 01 Jan 1970 00:02:00 GMT", 60.0),
     ("Thu, 01 Jan 1970 00:02:00 -0000", 60.0), ("Thu Jan  1 00:02:00 1970", 60.0),
     ("Thu, 01 Jan 1970 00:00:30 GMT", 0.0), ("-5", None), ("inf", None), ("nan", None),
     ("soon", None), (None, None)],
)  # fmt: skip
def test_retry_after_reads_seconds_and_dates_with_or_without_a_zone_as_gmt(
    header: str | None, seconds: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A zone-less date read in local time would be off by the machine's UTC offset.
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert retry_after_seconds(header, now=60.0) == seconds
    finally:
        monkeypatch.undo()
        time.tzset()
