"""Durations as operators write them in settings and on the command line: `30d`, `12h`, `off`."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Anchored, no nesting: linear on any input; the length cap keeps the number finite too.
_DURATION = re.compile(r"(\d{1,9})([smhdw])")
MAX_DURATION = timedelta(days=3650)


def parse_duration(raw: str, *, allow_off: bool = False) -> timedelta | None:
    """`30d` -> 30 days; `off` -> None when allowed; ValueError in our words otherwise."""
    text = raw.strip().lower()
    if allow_off and text == "off":
        return None
    match = _DURATION.fullmatch(text)
    if match is None:
        hint = ", or off" if allow_off else ""
        raise ValueError(f"expected a number and a unit s, m, h, d or w (such as 30d or 12h){hint}")
    duration = timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    if duration > MAX_DURATION:
        raise ValueError(f"at most {MAX_DURATION.days} days")
    return duration


def format_duration(duration: timedelta) -> str:
    """The shortest exact spelling parse_duration reads back: 86400 s -> `1d`."""
    seconds = int(duration.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"
