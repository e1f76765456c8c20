"""W3C Trace Context `traceparent` values: parsed strictly, made fresh, continued.

A header is hostile input: anything but the exact version-00 shape (55 characters, lowercase
hex, non-zero ids) is refused, so a caller can never put its own text (newlines, a long string)
into our logs, events or NATS headers. Refused means "start a new trace", never an error.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

LENGTH = 55  # "00-" + 32 hex + "-" + 16 hex + "-" + 2 hex
_HEX = frozenset("0123456789abcdef")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


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
    while True:  # all zeros is invalid; token_hex(8) gives it once in 2**64 draws
        span = secrets.token_hex(8)
        if span != _ZERO_SPAN:
            return span


def new_trace() -> TraceContext:
    """The root span of a new trace."""
    while (trace_id := secrets.token_hex(16)) == _ZERO_TRACE:
        pass
    return TraceContext(trace_id, new_span_id())


def parse(value: str | bytes | None) -> TraceContext | None:
    """The trace context a `traceparent` value names, or None when it is not a valid one."""
    if value is None:
        return None
    if isinstance(value, bytes):
        if len(value) != LENGTH:
            return None
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    if len(value) != LENGTH or value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    version, trace_id, span_id, flags = value[:2], value[3:35], value[36:52], value[53:]
    if version != "00" or not _HEX.issuperset(value.replace("-", "")):
        return None
    if value.count("-") != 3 or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return TraceContext(trace_id, span_id, bool(int(flags, 16) & 1))


def continued(value: str | bytes | None) -> TraceContext:
    """A new span under the given parent when it is valid; otherwise the root of a new trace."""
    parent = parse(value)
    return parent.child() if parent is not None else new_trace()
