from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agenttasks.durations import MAX_DURATION, format_duration, parse_duration


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("0s", timedelta(0)),
        (" 90M ", timedelta(minutes=90)),
        ("2w", timedelta(weeks=2)),
    ],
)
def test_reads_a_number_and_a_unit(raw: str, expected: timedelta) -> None:
    assert parse_duration(raw) == expected


def test_off_only_where_allowed() -> None:
    assert parse_duration("off", allow_off=True) is None
    with pytest.raises(ValueError, match="unit"):
        parse_duration("off")


@pytest.mark.parametrize("raw", ["", "30", "d", "1.5h", "-1d", "1d2h", "9" * 10 + "s", "30 d"])
def test_refuses_anything_else_in_its_own_words(raw: str) -> None:
    with pytest.raises(ValueError, match="expected a number") as error:
        parse_duration(raw)
    # A fixed message: the input is never echoed back.
    assert str(error.value) == "expected a number and a unit s, m, h, d or w (such as 30d or 12h)"


def test_caps_the_length() -> None:
    with pytest.raises(ValueError, match="at most 3650 days"):
        parse_duration("3651d")


@given(st.integers(min_value=0, max_value=int(MAX_DURATION.total_seconds())))
def test_format_reads_back(seconds: int) -> None:
    duration = timedelta(seconds=seconds)
    assert parse_duration(format_duration(duration)) == duration
