"""The pure parts of statistics: reading token usage and the `since` parameter."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agenttasks.api.statistics import parse_since
from agenttasks.projections.statistics import tokens_of


@pytest.mark.parametrize(
    ("result_data", "expected"),
    [
        ({"usage": {"prompt_tokens": 12, "completion_tokens": 30}}, (12, 30)),
        ({"usage": {"prompt_tokens": 12}}, (12, None)),
        ({"usage": {"prompt_tokens": True, "completion_tokens": -1}}, (None, None)),
        ({"usage": {"prompt_tokens": "12", "completion_tokens": 1.5}}, (None, None)),
        ({"usage": {"prompt_tokens": 2**70}}, (None, None)),
        ({"usage": "lots"}, (None, None)),
        ({"text": "no usage"}, (None, None)),
        (None, (None, None)),
    ],
)
def test_tokens_are_whole_non_negative_numbers_or_not_recorded(
    result_data: object, expected: tuple[int | None, int | None]
) -> None:
    assert tokens_of(result_data) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T08:30:00Z", datetime(2026, 11, 1, 8, 30, tzinfo=UTC)),
        ("2026-11-01T08:30:00+01:00", datetime(2026, 11, 1, 7, 30, tzinfo=UTC)),
        ("2026-11-01T08:30:00 01:00", datetime(2026, 11, 1, 7, 30, tzinfo=UTC)),
        ("2026-11-01 08:30", datetime(2026, 11, 1, 8, 30, tzinfo=UTC)),
        (" 2026-11-01 ", datetime(2026, 11, 1, tzinfo=UTC)),
    ],
)
def test_since_takes_an_iso_date_or_date_time_and_means_utc_without_an_offset(
    text: str, expected: datetime
) -> None:
    parsed = parse_since(text)
    assert parsed == expected
    assert parsed.utcoffset() is not None


@pytest.mark.parametrize(
    "text", ["yesterday", "", "2026-13-01", "2026-11-01T25:00", "0001-01-01T00:00:00+01:00"]
)
def test_a_bad_since_is_a_value_error_naming_the_parameter(text: str) -> None:
    with pytest.raises(ValueError, match="query parameter `since`"):
        parse_since(text)
