"""The W3C traceparent parser: exact valid values continue a trace, anything else never does."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from agenttasks.observability.traceparent import TraceContext, continued, new_trace, parse

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

hex_digits = st.text(alphabet="0123456789abcdef", min_size=1)


@given(
    trace_id=st.text(alphabet="0123456789abcdef", min_size=32, max_size=32),
    span_id=st.text(alphabet="0123456789abcdef", min_size=16, max_size=16),
    sampled=st.booleans(),
)
def test_every_valid_value_parses_back_to_itself(
    trace_id: str, span_id: str, sampled: bool
) -> None:
    value = f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"
    parsed = parse(value)
    if set(trace_id) == {"0"} or set(span_id) == {"0"}:
        assert parsed is None  # all-zero ids are invalid by the spec
    else:
        assert parsed == TraceContext(trace_id, span_id, sampled)
        assert parsed.header == value
        assert parse(value.encode()) == parsed


@given(st.text(max_size=300) | st.binary(max_size=300))
def test_any_other_input_is_refused_or_is_a_valid_value(value: str | bytes) -> None:
    parsed = parse(value)
    if parsed is not None:
        assert (value if isinstance(value, str) else value.decode()) == parsed.header


@given(st.text(alphabet=string.printable, min_size=1, max_size=3), st.integers(0, 54))
def test_a_valid_value_with_anything_put_in_is_refused(insert: str, at: int) -> None:
    assert parse(VALID[:at] + insert + VALID[at:]) is None


def test_hostile_shapes_are_refused() -> None:
    for value in (
        VALID.upper(),  # uppercase hex
        VALID + "-extra",  # too long
        VALID[:-1],  # too short
        "00-" + "a" * 31 + "g-00f067aa0ba902b7-01",  # bad hex
        VALID[:20] + "\n" + VALID[21:],  # an injected newline
        VALID.replace("-", "_"),
        "ff" + VALID[2:],  # a version we do not speak
        "01" + VALID[2:],
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01",  # zero span id
        "x" * 10_000,
        "",
        None,
    ):
        assert parse(value) is None, value


def test_a_valid_parent_is_continued_with_a_new_span_in_the_same_trace() -> None:
    child = continued(VALID)
    assert child.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert child.span_id != "00f067aa0ba902b7"
    assert parse(child.header) == child


def test_an_invalid_parent_starts_a_new_trace() -> None:
    fresh = continued("00-zz")
    assert parse(fresh.header) == fresh
    assert fresh.trace_id != new_trace().trace_id
