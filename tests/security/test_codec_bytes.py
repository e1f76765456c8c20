"""The fast JSON path writes exactly what the stdlib path did, for every input.

transcoding.py writes events with msgspec where it can prove the bytes are the stdlib encoder's;
stored events are contracts, so a single differing byte (a float's exponent, a tag written where
the stdlib wrote a string) would be a silent change of what is stored. These properties compare
the outcome, bytes or error, of the new encoder with the stdlib path on hostile values, and every
event class as stored. (Reading is the stdlib decoder's alone.)
"""

from __future__ import annotations

import enum
import json
from collections import OrderedDict
from datetime import UTC, date, timedelta, timezone
from typing import Any

import pytest
from eventsourcing.persistence import Transcoding
from hypothesis import given, settings
from hypothesis import strategies as st

from agenttasks.application.store import open_event_store
from agenttasks.application.transcoding import MAX_NESTING, SafeJSONTranscoder, UnstorableValue
from agenttasks.quarantine import describe
from tests.contracts.samples import CURRENT

STORE = open_event_store()
_transcoder = STORE.mapper.transcoder
assert isinstance(_transcoder, SafeJSONTranscoder)
TRANSCODER: SafeJSONTranscoder = _transcoder

MAGIC = ["_type_", "_data_", "uuid_hex", "datetime_iso", "decimal_str", "agenttasks_object_pairs"]


class Text(str):
    pass


class Number(int):
    pass


class Level(enum.IntEnum):
    HIGH = 3


class Colour(enum.StrEnum):
    RED = "red"


# Every code point, lone surrogates included (hypothesis leaves category Cs out by default, and
# draws one rarely even when allowed: some strings get one or two on purpose).
any_text = st.text(st.characters(exclude_categories=()), max_size=8) | st.builds(
    str.__add__,
    st.text(max_size=3),
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=2),
)
keys = st.sampled_from(MAGIC) | any_text
zones = (
    st.none()
    | st.just(UTC)
    | st.builds(
        timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
    )
)
odd_scalars = (
    st.builds(Text, any_text)
    | st.builds(Number, st.integers())
    | st.sampled_from([Level.HIGH, Colour.RED, date(2026, 12, 1), b"bytes", float("nan")])
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: past 64 bits too
    | st.integers(min_value=-(2**64), max_value=2**65)
    | st.floats()  # the whole double range, NaN and infinities
    | st.floats(min_value=1e-6, max_value=1e-3)
    | st.floats(min_value=1e15, max_value=1e17)
    | st.sampled_from([0.0, -0.0, 1e16, 1e-4, 9.999999999999999e15, 0.00009999999999999999])
    | st.sampled_from(MAGIC)
    | any_text
    | st.uuids()
    | st.datetimes(timezones=zones)
    | st.decimals(allow_nan=True)
)


def containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return (
        st.lists(inner, max_size=4)
        | st.dictionaries(keys, inner, max_size=4)
        | st.builds(lambda t, d: {"_type_": t, "_data_": d}, scalars | inner, inner)
        | st.tuples(inner, inner)
        | st.dictionaries(
            st.integers() | st.floats() | st.booleans() | st.none(), inner, max_size=2
        )
        | st.builds(OrderedDict, st.dictionaries(keys, inner, max_size=2))
    )


values = st.recursive(scalars | odd_scalars, containers, max_leaves=20)
plain_values = st.recursive(scalars, containers, max_leaves=20)
states = st.dictionaries(keys, values, max_size=6)


def outcome(call: Any, *args: Any) -> tuple[str, Any]:
    """What a call gave: its result's repr (types and key order count), or its error and text."""
    try:
        return ("ok", repr(call(*args)))
    except Exception as error:
        return ("error", (describe(error), str(error)))


@settings(max_examples=150, deadline=None)
@given(state=states)
def test_the_fast_encoder_writes_the_stdlib_paths_bytes_or_its_very_error(
    state: dict[str, Any],
) -> None:
    assert outcome(TRANSCODER.encode, state) == outcome(TRANSCODER.encode_with_stdlib, state)


@pytest.mark.parametrize("depth", [MAX_NESTING - 1, MAX_NESTING, MAX_NESTING + 1])
@pytest.mark.parametrize("shape", ["list", "dict"])
def test_nesting_at_and_past_the_cap_is_stored_or_refused_as_the_stdlib_path_does(
    depth: int, shape: str
) -> None:
    value: Any = 1
    for _ in range(depth):
        value = [value] if shape == "list" else {"k": value}
    state = {"config": value}
    assert outcome(TRANSCODER.encode, state) == outcome(TRANSCODER.encode_with_stdlib, state)


@pytest.mark.parametrize("name", sorted(CURRENT))
def test_every_event_class_is_stored_as_the_stdlib_path_stores_it(name: str) -> None:
    event = CURRENT[name]
    stored = STORE.mapper.to_stored_event(event)
    state = dict(vars(event))
    del state["originator_id"], state["originator_version"]
    if getattr(type(event), "class_version", 1) > 1:
        state["class_version"] = type(event).class_version
    assert stored.state == TRANSCODER.encode_with_stdlib(state)


class _Refuses:
    def encode(self, obj: Any) -> str:
        raise AssertionError("the stdlib path was taken")


def test_a_lifecycles_events_take_the_fast_path() -> None:
    # What the speed-up rests on (docs/performance.md, CODEC): were the fast path refused for
    # the common events, the property tests above would still pass and the gain would be gone.
    transcoder = SafeJSONTranscoder()
    STORE.register_transcodings(transcoder)
    transcoder.encoder = _Refuses()  # type: ignore[assignment]
    for name in (
        "Task.Created.v3.with_webhook",
        "Task.Started.v2.first",
        "Task.Completed.v2.summary",
    ):
        state = dict(vars(CURRENT[name]))
        state["config"] = {"n": [1.5, -0.0, 2**63, None, "\u2028"], "deep": {"a": {"b": [True]}}}
        assert transcoder.decode(transcoder.encode(state)) == state
    # A tag-shaped user object is escaped on the fast path too.
    assert transcoder.encode({"x": {"_type_": "uuid_hex", "_data_": 1}}) == (
        b'{"x":{"_type_":"agenttasks_object_pairs","_data_":[["_type_","uuid_hex"],["_data_",1]]}}'
    )


class LevelAsName(Transcoding):
    type = Level
    name = "level_name"

    def encode(self, obj: Level) -> str:
        return obj.name

    def decode(self, data: str) -> Level:
        return Level[data]


def test_a_transcoding_for_a_subclass_of_a_json_type_is_not_used_as_the_stdlib_never_uses_it() -> (
    None
):
    # The stdlib writes an IntEnum as its int and never calls `default` for it.
    transcoder = SafeJSONTranscoder()
    STORE.register_transcodings(transcoder)
    transcoder.register(LevelAsName())
    state = {"level": Level.HIGH, "levels": [Level.HIGH]}
    assert (
        transcoder.encode(state)
        == transcoder.encode_with_stdlib(state)
        == b'{"level":3,"levels":[3]}'
    )


class _Items(list):  # type: ignore[type-arg]
    """A list subclass: the stdlib writes it as an array."""


@pytest.mark.parametrize(
    "value",
    [
        OrderedDict([("_type_", "uuid_hex"), ("_data_", "not a uuid")]),
        ({"_type_": "decimal_str", "_data_": "1"},),
        _Items([{"_type_": "datetime_iso", "_data_": "yesterday"}]),
        {"outer": OrderedDict(inner=({"_type_": "x", "_data_": 1},))},
    ],
    ids=["ordered-dict", "in-a-tuple", "in-a-list-subclass", "nested"],
)
def test_a_tag_shaped_object_in_any_container_reads_back_as_itself(value: Any) -> None:
    # Found by the properties above: the old path escaped only exact dicts inside exact dicts
    # and lists, so these were stored as tags and their event could never be decoded again.
    stored = TRANSCODER.encode({"config": value})
    assert stored == TRANSCODER.encode_with_stdlib({"config": value})
    assert TRANSCODER.decode(stored) == {"config": json.loads(json.dumps(value))}


def test_nesting_through_tuples_is_capped_too() -> None:
    value: Any = 1
    for _ in range(MAX_NESTING + 1):
        value = (value,)
    with pytest.raises(UnstorableValue):
        TRANSCODER.encode({"config": value})
