"""`pattern` and `patternProperties` on RE2: linear time, no catastrophic backtracking.

JSON Schema patterns are searched, not anchored (`^`/`$` anchor explicitly). RE2 runs the
documented subset (https://github.com/google/re2/wiki/Syntax): no backreferences, no
lookaround. A pattern outside it is refused when the template is saved.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

# Each compiled program may use this much memory; compiled programs are cached (bounded).
_MAX_PROGRAM_BYTES = 1 << 20
_OPTIONS = re2.Options()
_OPTIONS.max_mem = _MAX_PROGRAM_BYTES
_OPTIONS.log_errors = False  # RE2 would print each refused pattern to stderr


class PatternRefused(ValueError):
    """A pattern RE2 cannot run (or one too large for it); the message is ours."""


@lru_cache(maxsize=256)
def compiled(pattern: str) -> Any:
    """The RE2 program for `pattern`; PatternRefused when RE2 cannot run it."""
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error:
        raise PatternRefused(
            "the pattern cannot run on RE2: it is malformed, too large, or uses what RE2 "
            "lacks (backreferences, lookaround, repetition counts over 1000)"
        ) from None


def search(pattern: str, text: str) -> bool:
    """Whether `pattern` matches anywhere in `text`."""
    return compiled(pattern).search(text) is not None
