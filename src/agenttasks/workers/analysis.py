"""Exact statistics for data_analysis, computed in code whatever the engine.

The stdlib `statistics` module computes exactly (fractions internally where it matters);
the standard deviation is the sample one (n - 1), named so in the output. No NaN or infinity
ever reaches the result: JSON cannot carry them.
"""

from __future__ import annotations

import math
import statistics
from itertools import combinations
from typing import Any

Data = dict[str, list[float]] | list[dict[str, Any]]


def series_of(data: Data) -> dict[str, list[float]]:
    """Named numeric series: given as such, or the numeric fields of a list of records."""
    if isinstance(data, dict):
        return {name: [float(v) for v in values] for name, values in data.items()}
    found: dict[str, list[float]] = {}
    for record in data:
        for name, value in record.items():
            if (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
            ):
                found.setdefault(name, []).append(float(value))
    return found


def describe(values: list[float]) -> dict[str, Any]:
    """count, mean, median, sample std dev, min, max, quartiles, IQR and the outliers (1.5 IQR)."""
    count = len(values)
    q1, _, q3 = (
        statistics.quantiles(values, n=4, method="inclusive") if count > 1 else (values[0],) * 3
    )
    iqr = q3 - q1
    low, high = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    return {
        "count": count,
        "mean": _finite(statistics.fmean(values)),
        "median": _finite(statistics.median(values)),
        "std_dev": _finite(statistics.stdev(values)) if count > 1 else 0.0,
        "std_dev_kind": "sample",
        "min": min(values),
        "max": max(values),
        "q1": _finite(q1),
        "q3": _finite(q3),
        "iqr": _finite(iqr),
        "outliers": [v for v in values if v < low or v > high],
    }


def trend(values: list[float]) -> dict[str, Any] | None:
    """Least-squares line through the values against their index, or None for < 2 points."""
    if len(values) < 2:
        return None
    slope, intercept = statistics.linear_regression(range(len(values)), values)
    direction = (
        "flat"
        if math.isclose(slope, 0.0, abs_tol=1e-12)
        else ("rising" if slope > 0 else "falling")
    )
    return {"slope": _finite(slope), "intercept": _finite(intercept), "direction": direction}


def correlation(a: list[float], b: list[float]) -> float | None:
    """Pearson's r for two series of equal length; None when undefined (constant series)."""
    if len(a) != len(b) or len(a) < 2:
        return None
    try:
        return _finite(statistics.correlation(a, b))
    except statistics.StatisticsError:
        return None


def analyse(data: Data, analysis_type: str) -> dict[str, Any]:
    """The figures for `data`, and plain sentences stating the most telling of them."""
    series = {name: values for name, values in series_of(data).items() if values}
    result: dict[str, Any] = {
        "analysis_type": analysis_type,
        "statistics": {name: describe(values) for name, values in series.items()},
        "trend": {name: trend(values) for name, values in series.items() if len(values) > 1},
        "correlations": [
            {"a": a, "b": b, "pearson": correlation(series[a], series[b])}
            for a, b in combinations(series, 2)
            if len(series[a]) == len(series[b])
        ],
    }
    result["insights"] = _insights(result)
    return result


def _insights(result: dict[str, Any]) -> list[str]:
    lines = []
    for name, figures in result["statistics"].items():
        lines.append(
            f"{name}: {figures['count']} values, mean {figures['mean']:.4g}, median "
            f"{figures['median']:.4g}, from {figures['min']:.4g} to {figures['max']:.4g}."
        )
        if figures["outliers"]:
            lines.append(f"{name}: {len(figures['outliers'])} outlier(s) beyond 1.5 IQR.")
    for name, line in result["trend"].items():
        if line and line["direction"] != "flat":
            lines.append(f"{name} is {line['direction']} by {line['slope']:.4g} per step.")
    for pair in result["correlations"]:
        r = pair["pearson"]
        if r is not None and abs(r) >= 0.7:
            strength = "strongly " + ("positively" if r > 0 else "negatively")
            lines.append(f"{pair['a']} and {pair['b']} are {strength} correlated (r = {r:.3f}).")
    return lines


def _finite(value: float) -> float:
    # Huge inputs can overflow an intermediate to inf; report the largest float instead.
    if math.isnan(value):
        return 0.0
    return max(-1.7976931348623157e308, min(1.7976931348623157e308, value))
