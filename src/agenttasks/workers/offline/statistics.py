"""Exact statistics for data_analysis, computed in code whatever the engine.

The stdlib `statistics` module does the arithmetic (mean and standard deviation exactly, through
fractions). The standard deviation is the sample one (n - 1) and the quartiles the "inclusive"
method (as numpy's default and spreadsheets' QUARTILE.INC); the output names both. No NaN or
infinity ever reaches the result, since JSON cannot carry them: a figure that would overflow a
float is computed on the series scaled by a power of two (exact) and clamped to the largest float.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from typing import Any

LARGEST = 1.7976931348623157e308
MAX_OUTLIERS_LISTED = 100  # the count is always given; the values only up to this many
MAX_CORRELATED = 50  # series correlated pairwise (1,225 pairs); records can have many fields
MAX_BINS = 30
STRONG = 0.7  # |r| from which a correlation is worth a sentence
MIN_PAIRS_TO_STATE = 3  # two points always correlate perfectly: not worth saying


class DataError(ValueError):
    """The data holds nothing to analyse; the message says what was expected."""


@dataclass(frozen=True)
class Series:
    """One named numeric series: its values in order, and where each stood in the input."""

    name: str
    at: dict[int, float]  # position (list index or record number) -> value
    length: int  # positions in the input, numbers or not
    skipped: int  # entries at this name that were not finite numbers

    @property
    def values(self) -> list[float]:
        return list(self.at.values())


def series_of(data: Any) -> list[Series]:
    """Named numeric series: given as such ({"sales": [1, 2]}), or the numeric fields of a list of
    records ([{"month": "Jan", "sales": 1}]). Non-numbers (None, text, booleans, NaN) are skipped
    and counted."""
    if isinstance(data, dict):
        columns = [(str(k), list(v)) for k, v in data.items() if isinstance(v, list | tuple)]
        length = None
    elif isinstance(data, list | tuple) and any(isinstance(r, dict) for r in data):
        records = [r for r in data if isinstance(r, dict)]
        names = list(dict.fromkeys(k for r in records for k in r))
        columns = [(str(n), [r.get(n, _ABSENT) for r in records]) for n in names]
        length = len(records)
    else:
        raise DataError("data must be an object of named series or a list of records")
    found = []
    for name, cells in columns:
        at = {i: number for i, cell in enumerate(cells) if (number := _number(cell)) is not None}
        if at:
            skipped = sum(1 for c in cells if c is not _ABSENT) - len(at)
            found.append(Series(name, at, len(cells) if length is None else length, skipped))
    if not found:
        raise DataError("data holds no numeric values (numbers that are not NaN or infinite)")
    return found


def analyse(data: Any, analysis_type: str) -> dict[str, Any]:
    """The figures for `data` and plain sentences stating them; DataError for unusable data."""
    series = series_of(data)
    result: dict[str, Any] = {
        "analysis_type": analysis_type,
        "method": {"std_dev": "sample (n - 1)", "quartiles": "inclusive", "outliers": "1.5 IQR"},
        "statistics": {s.name: describe(s.values) | {"skipped": s.skipped} for s in series},
        "trend": {s.name: trend(s.values, list(s.at)) for s in series if len(s.at) > 1},
        "correlations": correlations(series),
    }
    if analysis_type == "distribution":
        result["histograms"] = {s.name: histogram(s.values) for s in series}
    result["insights"] = insights(result)
    return result


def describe(values: list[float]) -> dict[str, Any]:
    """count, mean, median, sample std dev, min, max, quartiles, IQR and the outliers (1.5 IQR)."""
    count = len(values)
    if count > 1:
        q1, _, q3 = _scaled(lambda v: statistics.quantiles(v, n=4, method="inclusive"), values)
    else:
        q1 = q3 = values[0]
    iqr = _finite(q3 - q1)
    low, high = q1 - 1.5 * iqr, q3 + 1.5 * iqr  # may be ±inf: then nothing lies beyond
    outliers = [v for v in values if v < low or v > high]
    return {
        "count": count,
        "mean": statistics.mean(values),  # exact, so always between min and max
        "median": _scaled(lambda v: [statistics.median(v)], values)[0],
        "std_dev": _scaled(lambda v: [statistics.stdev(v)], values)[0] if count > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "q1": q1,
        "q3": q3,
        "iqr": iqr,
        "outlier_count": len(outliers),
        "outliers": outliers[:MAX_OUTLIERS_LISTED],
    }


def trend(values: list[float], positions: list[int] | None = None) -> dict[str, Any] | None:
    """Least-squares line through the values against their positions (0, 1, 2, ... unless
    given: a record's number, so gaps count); None for fewer than 2 points."""
    if len(values) < 2:
        return None
    xs = [float(x) for x in (range(len(values)) if positions is None else positions)]
    slope, intercept = _scaled(lambda v: list(statistics.linear_regression(xs, v)), values)
    spread = _finite(max(values) - min(values))
    # Flat when the line moves less than a millionth of the data's range over the whole series.
    moved = abs(slope) * (xs[-1] - xs[0])
    direction = "flat" if moved <= spread * 1e-6 else ("rising" if slope > 0 else "falling")
    return {
        "slope": slope,
        "intercept": intercept,
        "direction": direction,
        "r_squared": _r_squared(xs, values),
    }


def correlation(a: list[float], b: list[float]) -> float | None:
    """Pearson's r for two series of equal length; None when undefined (fewer than 2 pairs, or a
    constant series)."""
    if len(a) != len(b) or len(a) < 2:
        return None
    try:
        # r does not change when a series is scaled, and scaled into [-1, 1] no sum overflows.
        r = statistics.correlation(_unit(a), _unit(b))
    except statistics.StatisticsError:
        return None
    return max(-1.0, min(1.0, r)) if math.isfinite(r) else None


def correlations(series: list[Series]) -> list[dict[str, Any]]:
    """Pearson's r for each pair of series, over the positions where both have a number."""
    pairs = []
    for a, b in combinations(series[:MAX_CORRELATED], 2):
        if a.length != b.length:
            continue  # named series of different lengths: no pairing of their values
        shared = sorted(a.at.keys() & b.at.keys())
        xs, ys = [a.at[i] for i in shared], [b.at[i] for i in shared]
        pairs.append({"a": a.name, "b": b.name, "n": len(shared), "pearson": correlation(xs, ys)})
    return pairs


def histogram(values: list[float]) -> list[dict[str, Any]]:
    """Counts in equal-width bins from min to max (Sturges' rule for how many, at most 30)."""
    low, high = min(values), max(values)
    if low == high:
        return [{"from": low, "to": high, "count": len(values)}]
    bins = min(MAX_BINS, math.ceil(math.log2(len(values))) + 1)
    # Positions computed on the series scaled into [-1, 1]: a difference there cannot overflow.
    unit = _unit(values)
    u_low, u_high = min(unit), max(unit)
    counts = [0] * bins
    for u in unit:
        counts[min(bins - 1, int((u - u_low) / (u_high - u_low) * bins))] += 1
    edges = [low * (1 - k / bins) + high * (k / bins) for k in range(bins + 1)]
    return [{"from": edges[k], "to": edges[k + 1], "count": counts[k]} for k in range(bins)]


def _number(cell: Any) -> float | None:
    if isinstance(cell, bool) or not isinstance(cell, int | float):
        return None
    try:
        number = float(cell)
    except OverflowError:  # an integer beyond any float
        return None
    return number if math.isfinite(number) else None


_ABSENT = object()  # a record without the field: neither a value nor a skipped entry


def insights(result: dict[str, Any]) -> list[str]:
    """Plain sentences stating the figures of an `analyse` result."""
    lines = []
    for name, f in result["statistics"].items():
        spread = f", sample standard deviation {_n(f['std_dev'])}" if f["count"] > 1 else ""
        lines.append(
            f"{name}: {_count(f['count'], 'value')}, mean {_n(f['mean'])}, median "
            f"{_n(f['median'])}, from {_n(f['min'])} to {_n(f['max'])}{spread}."
        )
        if f["skipped"]:
            left_out = _count(f["skipped"], "non-numeric entry", "non-numeric entries")
            lines.append(f"{name}: left out {left_out}.")
        if f["outlier_count"]:
            shown = ", ".join(_n(v) for v in f["outliers"][:5])
            more = " …" if f["outlier_count"] > 5 else ""
            lines.append(
                f"{name}: {_count(f['outlier_count'], 'outlier')} beyond 1.5 IQR of the quartiles "
                f"({_n(f['q1'])} to {_n(f['q3'])}): {shown}{more}."
            )
    for name, line in result["trend"].items():
        if line["direction"] != "flat":
            fit = "" if line["r_squared"] is None else f" (R\u00b2 = {line['r_squared']:.3f})"
            lines.append(
                f"{name} is {line['direction']} by {_n(abs(line['slope']))} per step{fit}."
            )
    for pair in result["correlations"]:
        r = pair["pearson"]
        if r is not None and abs(r) >= STRONG and pair["n"] >= MIN_PAIRS_TO_STATE:
            sign = "positively" if r > 0 else "negatively"
            lines.append(
                f"{pair['a']} and {pair['b']} are strongly {sign} correlated "
                f"(Pearson r = {r:.3f} over {pair['n']} pairs)."
            )
    return lines


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def _n(value: float) -> str:
    # Whole numbers as such (1200, not 1.2e+03); others to six significant figures.
    if value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.6g}" if abs(value) >= 1e-4 or value == 0 else f"{value:.6g}"


def _r_squared(xs: list[float], values: list[float]) -> float | None:
    r = correlation(xs, values)
    return None if r is None else r * r


def _unit(values: list[float]) -> list[float]:
    return _scale(values, -_exponent(values))


def _scaled(compute: Callable[[list[float]], list[float]], values: list[float]) -> list[float]:
    # Compute directly (exact); only if a figure overflows, again on the values scaled by a
    # power of two, which loses nothing but the tiniest values next to huge ones.
    try:
        direct = list(compute(values))
        if all(math.isfinite(x) for x in direct):
            return direct
    except statistics.StatisticsError:
        raise
    except (OverflowError, ValueError):  # fsum: "intermediate overflow", "-inf + inf"
        pass
    exponent = _exponent(values)
    return [_ldexp(x, exponent) for x in compute(_scale(values, -exponent))]


def _exponent(values: list[float]) -> int:
    return math.frexp(max(abs(v) for v in values))[1]


def _scale(values: list[float], exponent: int) -> list[float]:
    return [math.ldexp(v, exponent) for v in values]


def _ldexp(value: float, exponent: int) -> float:
    try:
        return _finite(math.ldexp(value, exponent))
    except OverflowError:
        return math.copysign(LARGEST, value)


def _finite(value: float) -> float:
    # Only a figure truly beyond the float range gets here (a spread of ±1e308 values).
    return max(-LARGEST, min(LARGEST, value))
