"""W3C Trace Context `traceparent` values: parsed strictly, made fresh, continued.

A header is hostile input: anything but the exact version-00 shape (55 characters, lowercase
hex, non-zero ids) is refused, so a caller can never put its own text (newlines, a long string)
into our logs, events or NATS headers. Refused means "start a new trace", never an error.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass

LENGTH = 55  # "00-" + 32 hex + "-" + 16 hex + "-" + 2 hex
# Fixed lengths, no alternation: the match is linear and cannot backtrack.
_SHAPE = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_random = random.Random()  # seeded from os.urandom; ids, not secrets
os.register_at_fork(after_in_child=_random.seed)  # a forked child must not repeat its parent's


@dataclass(frozen=True, slots=True)
class TraceContext:
    """One span's place in a trace: the trace id, this span's id, the sampled flag."""

    trace_id: str  # 32 lowercase hex digits
    span_id: str  # 16 lowercase hex digits
    sampled: bool = True

    @property
    def header(self) -> str:
        """The `traceparent` value naming this span as the parent."""
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    def child(self) -> TraceContext:
        """A new span in the same trace (its parent is this one)."""
        return TraceContext(self.trace_id, new_span_id(), self.sampled)


def new_span_id() -> str:
    """A random, non-zero 16-hex-digit span id."""
    # Not secrets: an id only has to be unique, and os.urandom's system call would be most of
    # a request's tracing cost (OpenTelemetry's own id generator does the same).
    return f"{_random.getrandbits(64) or 1:016x}"


def new_trace() -> TraceContext:
    """The root span of a new trace."""
    return TraceContext(f"{_random.getrandbits(128) or 1:032x}", new_span_id())


def parse(value: str | bytes | None) -> TraceContext | None:
    """The trace context a `traceparent` value names, or None when it is not a valid one."""
    if value is None or len(value) != LENGTH:  # the length first: a huge value costs nothing
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    match = _SHAPE.fullmatch(value)
    if match is None:
        return None
    trace_id, span_id, flags = match.groups()
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return TraceContext(trace_id, span_id, bool(int(flags, 16) & 1))


def continued(value: str | bytes | None) -> TraceContext:
    """A new span under the given parent when it is valid; otherwise the root of a new trace."""
    parent = parse(value)
    return parent.child() if parent is not None else new_trace()
