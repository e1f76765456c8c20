"""Exact statistics for data_analysis: the figures the stdlib computes, never NaN or infinity."""

from __future__ import annotations

import math
import statistics

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agenttasks.workers.offline.statistics import DataError, analyse, correlation, describe, trend

FINITE = st.floats(allow_nan=False, allow_infinity=False)
SERIES = st.lists(FINITE, min_size=1, max_size=60)


def test_named_series_get_exact_figures_and_the_outlier_beyond_one_and_a_half_iqr() -> None:
    result = analyse({"sales": [10, 12, 14, 16, 100], "cost": [5, 6, 7, 8, 9]}, "statistical")
    sales = result["statistics"]["sales"]
    assert sales == {
        "count": 5,
        "mean": 30.4,
        "median": 14.0,
        "std_dev": statistics.stdev([10, 12, 14, 16, 100]),
        "min": 10.0,
        "max": 100.0,
        "q1": 12.0,
        "q3": 16.0,
        "iqr": 4.0,
        "outlier_count": 1,
        "outliers": [100.0],
        "skipped": 0,
    }
    assert result["method"]["std_dev"] == "sample (n - 1)"
    assert result["trend"]["cost"] == {
        "slope": 1.0,
        "intercept": 5.0,
        "direction": "rising",
        "r_squared": 1.0,
    }


def test_insights_state_the_figures_in_plain_sentences() -> None:
    result = analyse({"sales": [10, 12, 14, 16, 100], "cost": [9, 8, 7, 6, 4]}, "trend")
    assert result["insights"] == [
        "sales: 5 values, mean 30.4, median 14, from 10 to 100, sample standard deviation 38.9718.",
        "sales: 1 outlier beyond 1.5 IQR of the quartiles (12 to 16): 100.",
        "cost: 5 values, mean 6.8, median 7, from 4 to 9, sample standard deviation 1.92354.",
        "sales is rising by 18.4 per step (R\u00b2 = 0.557).",
        "cost is falling by 1.2 per step (R\u00b2 = 0.973).",
        "sales and cost are strongly negatively correlated (Pearson r = -0.846 over 5 pairs).",
    ]


def test_records_become_series_of_their_numeric_fields_and_non_numbers_are_counted() -> None:
    records = [
        {"month": "Jan", "visits": 120, "signups": 12},
        {"month": "Feb", "visits": None, "signups": 15},
        {"month": "Mar", "visits": 160, "signups": True},
        {"month": "Apr", "visits": 180, "signups": 21.5},
        {"month": "May", "visits": "n/a"},
    ]
    result = analyse(records, "statistical")
    assert set(result["statistics"]) == {"visits", "signups"}
    assert result["statistics"]["visits"]["count"] == 3
    assert result["statistics"]["visits"]["skipped"] == 2
    assert result["statistics"]["signups"]["skipped"] == 1  # a boolean is not a number
    assert result["statistics"]["signups"]["mean"] == pytest.approx((12 + 15 + 21.5) / 3)
    # Pairs are taken record by record: only Jan and Apr have both.
    assert result["correlations"] == [{"a": "visits", "b": "signups", "n": 2, "pearson": 1.0}]
    # The trend counts the gap: visits at records 0, 2, 3 rise by 20 per record.
    assert result["trend"]["visits"]["slope"] == pytest.approx(20.0)
    assert "visits: left out 2 non-numeric entries." in result["insights"]


def test_a_constant_series_has_no_correlation_and_a_flat_trend() -> None:
    result = analyse({"flat": [3, 3, 3, 3], "up": [1, 2, 3, 4]}, "correlation")
    assert result["correlations"] == [{"a": "flat", "b": "up", "n": 4, "pearson": None}]
    assert result["trend"]["flat"]["direction"] == "flat"
    assert result["trend"]["flat"]["r_squared"] is None
    assert result["statistics"]["flat"]["std_dev"] == 0.0


def test_series_of_different_lengths_are_not_correlated() -> None:
    result = analyse({"a": [1, 2, 3], "b": [1, 2, 3, 4]}, "correlation")
    assert result["correlations"] == []


def test_a_single_value_is_described_without_spread_or_trend() -> None:
    result = analyse({"only": [42]}, "trend")
    figures = result["statistics"]["only"]
    assert (figures["count"], figures["mean"], figures["std_dev"], figures["iqr"]) == (1, 42, 0, 0)
    assert result["trend"] == {}


def test_distribution_analysis_adds_histograms_that_count_every_value() -> None:
    values = [1, 2, 2, 3, 3, 3, 4, 4, 5, 9]
    bins = analyse({"x": values}, "distribution")["histograms"]["x"]
    assert len(bins) == 5  # Sturges: ceil(log2 10) + 1
    assert sum(b["count"] for b in bins) == len(values)
    assert (bins[0]["from"], bins[-1]["to"]) == (1.0, 9.0)
    assert analyse({"x": values}, "statistical").get("histograms") is None


def test_values_near_the_float_limit_give_finite_figures_not_overflow() -> None:
    huge = [1.7e308, -1.7e308, 1.6e308, 1.5e308]
    result = analyse({"huge": huge, "step": [1.0, 2.0, 3.0, 4.0]}, "trend")
    figures = result["statistics"]["huge"]
    assert figures["median"] == pytest.approx(1.55e308)
    assert figures["std_dev"] == pytest.approx(statistics.stdev([v / 1e300 for v in huge]) * 1e300)
    assert math.isfinite(figures["iqr"])
    assert result["correlations"][0]["pearson"] == pytest.approx(
        statistics.correlation([v / 1e300 for v in huge], [1.0, 2.0, 3.0, 4.0])
    )
    msgspec.json.encode(result)


def test_correlation_of_huge_and_tiny_values_is_still_right() -> None:
    # statistics.correlation alone overflows its sums here and answers 0.0.
    assert correlation([1.0, 2.0, 3.0], [1e200, 2e200, 4e200]) == pytest.approx(0.9819805)
    assert correlation([1e-200, 2e-200, 4e-200], [1.0, 2.0, 3.0]) == pytest.approx(0.9819805)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (5, "named series or a list of records"),
        ("sales", "named series or a list of records"),
        ([1, 2, 3], "named series or a list of records"),
        ({"sales": "high"}, "no numeric values"),
        ({"sales": [None, "x", float("nan"), float("inf")]}, "no numeric values"),
        ([{"region": "north"}], "no numeric values"),
    ],
)
def test_unusable_data_is_a_clear_data_error(data: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        analyse(data, "statistical")


@settings(max_examples=200, deadline=None)
@given(SERIES)
def test_mean_median_min_and_max_equal_the_stdlib(values: list[float]) -> None:
    figures = describe(values)
    assert figures["mean"] == statistics.mean(values)
    assert figures["min"] == min(values)
    assert figures["max"] == max(values)
    median = statistics.median(values)
    if math.isfinite(median):  # otherwise the stdlib overflowed, and ours must not
        assert figures["median"] == median
    assert min(values) <= figures["median"] <= max(values)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), SERIES, min_size=1, max_size=4), st.booleans())
def test_any_numeric_data_gives_json_with_no_nan_or_infinity(
    data: dict[str, list[float]], as_records: bool
) -> None:
    shaped: object = data
    if as_records:
        rows = max(len(v) for v in data.values())
        shaped = [{k: v[i] for k, v in data.items() if i < len(v)} for i in range(rows)]
    result = analyse(shaped, "distribution")
    assert all(math.isfinite(x) for x in floats_in(result))
    assert msgspec.json.decode(msgspec.json.encode(result)) == result
    assert all(-1.0 <= p["pearson"] <= 1.0 for p in result["correlations"] if p["pearson"])


def floats_in(value: object) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [x for v in value.values() for x in floats_in(v)]
    if isinstance(value, list):
        return [x for v in value for x in floats_in(v)]
    return []


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-1000, 1000), min_size=2, max_size=40))
def test_a_trend_line_goes_the_way_its_slope_says(values: list[int]) -> None:
    line = trend([float(v) for v in values])
    assert line is not None
    expected = statistics.linear_regression(range(len(values)), values).slope
    assert line["slope"] == pytest.approx(expected)
    if line["direction"] == "rising":
        assert expected > 0
    elif line["direction"] == "falling":
        assert expected < 0
    else:
        assert abs(expected) * (len(values) - 1) <= (max(values) - min(values)) * 1e-6
