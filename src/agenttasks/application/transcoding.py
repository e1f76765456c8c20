"""How events are encoded for the event store: eventsourcing's JSON, made safe for user JSON.

eventsourcing's `JSONTranscoder` writes a UUID or a datetime as `{"_type_": ..., "_data_": ...}`
and reads *every* object of exactly that shape back as a tagged value. An event field holding
user JSON of that shape (a task config, a template schema, a model's output) would be stored
fine and then never decode again, stopping every reader of the log behind it. So before
encoding, each such object is escaped as a tagged list of its key/value pairs, which the
decoder turns back into the same object. Events without that shape encode byte for byte as
before, so everything stored earlier still reads the same.

Two more things a hostile value could do are refused or repaired here, where every event
passes: nesting deep enough that the C decoder's recursion limit (shared with the Python stack)
could be hit on the way back in, and lone surrogates, which cannot be written as UTF-8.

The bytes are written by msgspec when that is proven to give exactly the stdlib's bytes, which
costs a tenth of the stdlib encoder's call (docs/performance.md, CODEC): one walk over the value
checks every type, escapes tag-shaped objects and turns UUIDs, datetimes and Decimals into their
tags, and anything it cannot vouch for (a subclass, a tuple, a non-str key, an unregistered type,
a lone surrogate) sends the whole value down the stdlib path, unchanged from before. Reading is
the library's stdlib decoder, as before: a msgspec read with a walk for the tags measured 2-27%
less per event (a few microseconds a lifecycle) and would have been a second reader of every
stored row to keep equal to the first; not kept (docs/performance.md, CODEC).
"""

from __future__ import annotations

from typing import Any

import msgspec
from eventsourcing.persistence import JSONTranscoder, Transcoding

# Far below the interpreter's recursion limit (1000 frames, which decoding shares with the
# caller's stack), far above anything a real config, schema or result needs.
MAX_NESTING = 100

_TAG_KEYS = frozenset({"_type_", "_data_"})

# msgspec writes ints of 64 bits (signed or not) as the stdlib does; beyond, it refuses.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
# msgspec writes the digits of float.__repr__, but its exponent form differs (1e16, not 1e+16;
# 0.000099, not 9.9e-05): inside this range repr has no exponent and the bytes are the same
# (checked on 810,000 doubles, and by tests/security/test_codec_bytes.py). NaN and infinities
# are outside it too (the stdlib writes NaN/Infinity, msgspec null).
_PLAIN_FLOAT_MIN, _PLAIN_FLOAT_MAX = 1e-4, 1e16
# Types the stdlib encoder writes itself, never through `default`: a transcoding registered for
# one of their subclasses is not used by the stdlib path, so the fast path must not use it either.
_NATIVE = (str, int, float, list, tuple, dict)
# What the fast path could not take: the value goes down the stdlib path.
_REFUSED = object()


class UnstorableValue(ValueError):
    """A value no event may hold (nested too deeply); the message says why, without the value."""


class _EscapedObject:
    """A marker type: transcodings register by type and by name, and only the name is used."""


class ObjectAsPairs(Transcoding):
    """A user object shaped like a tag, stored as `[[key, value], ...]` and read back as itself."""

    type = _EscapedObject
    name = "agenttasks_object_pairs"

    def encode(self, obj: Any) -> list[list[Any]]:
        return [[key, value] for key, value in obj.items()]

    def decode(self, data: list[list[Any]]) -> dict[str, Any]:
        return dict(data)


class SafeJSONTranscoder(JSONTranscoder):
    """A JSONTranscoder that reads back every JSON value it accepted, whatever its keys."""

    def __init__(self) -> None:
        super().__init__()
        self._tagged: dict[type, Transcoding] = {}
        self._fast = msgspec.json.Encoder()
        self.register(ObjectAsPairs())

    def register(self, transcoding: Transcoding) -> None:
        """Registers `transcoding`; the fast path tags only the types the stdlib hands to it."""
        super().register(transcoding)
        if not issubclass(transcoding.type, _NATIVE):
            self._tagged[transcoding.type] = transcoding

    def encode(self, obj: Any) -> bytes:
        """`obj` as stored: the stdlib path's bytes, written by msgspec when that is proven."""
        try:
            plain = _plain(obj, 0, self._tagged)
        except _Unsure:
            plain = _REFUSED
        if plain is not _REFUSED:
            try:
                return self._fast.encode(plain)
            except UnicodeEncodeError:  # a lone surrogate: the stdlib path repairs it
                pass
        # Outside the handlers, so an error here is the stdlib path's alone, as before.
        return self.encode_with_stdlib(obj)

    def encode_with_stdlib(self, obj: Any) -> bytes:
        """The bytes as the library's encoder writes them, after our escaping and repair."""
        text = self.encoder.encode(_escaped(obj, 0))
        try:
            return text.encode("utf8")
        except UnicodeEncodeError:
            # Lone surrogates (from a model's JSON "\ud800", say): a pair joins into its
            # character, a lone one becomes U+FFFD, so the stored text is valid UTF-8.
            return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf8")


class _Unsure(Exception):
    """The fast path cannot vouch that msgspec writes this value as the stdlib does."""


def _plain(value: Any, depth: int, tagged: dict[type, Transcoding]) -> Any:
    """`value` as msgspec writes it to the stdlib path's bytes; _Unsure when that is not proven."""
    kind = type(value)
    if kind is dict:
        return _plain_object(value, depth, tagged)
    if kind is list:
        return _plain_array(value, depth, tagged)
    return _plain_scalar(value, kind, tagged)


def _plain_scalar(value: Any, kind: type, tagged: dict[type, Transcoding]) -> Any:
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if _INT_MIN <= value <= _INT_MAX:
            return value
        raise _Unsure  # rare; and beyond 4,300 digits the stdlib's own error must come first
    if kind is float:
        if value == 0.0 or _PLAIN_FLOAT_MIN <= abs(value) < _PLAIN_FLOAT_MAX:
            return value
        return msgspec.Raw(_float_text(value))
    transcoding = tagged.get(kind)
    if transcoding is None:
        raise _Unsure
    data = transcoding.encode(value)
    if type(data) is not str:
        raise _Unsure
    return {"_type_": transcoding.name, "_data_": data}


def _plain_array(value: list[Any], depth: int, tagged: dict[type, Transcoding]) -> list[Any]:
    if depth >= MAX_NESTING:
        raise UnstorableValue(f"a value is nested more than {MAX_NESTING} levels deep")
    copied: list[Any] | None = None
    index = -1
    for item in value:
        index += 1
        # The common scalars inline: a dataset of numbers is one loop, not a call per number.
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int and _INT_MIN <= item <= _INT_MAX:
            continue
        if kind is float and (item == 0.0 or _PLAIN_FLOAT_MIN <= abs(item) < _PLAIN_FLOAT_MAX):
            continue
        new: Any
        if kind is dict:
            new = _plain_object(item, depth + 1, tagged)
        elif kind is list:
            new = _plain_array(item, depth + 1, tagged)
        else:
            new = _plain_scalar(item, kind, tagged)
        if new is not item:
            copied = copied if copied is not None else list(value)
            copied[index] = new
    return value if copied is None else copied


def _plain_object(
    value: dict[Any, Any], depth: int, tagged: dict[type, Transcoding]
) -> dict[str, Any]:
    if depth >= MAX_NESTING:
        raise UnstorableValue(f"a value is nested more than {MAX_NESTING} levels deep")
    fields: dict[str, Any] | None = None
    for key, item in value.items():
        if type(key) is not str:
            raise _Unsure  # the stdlib writes 1, 1.5, True, None keys as text, or refuses
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int and _INT_MIN <= item <= _INT_MAX:
            continue
        if kind is float and (item == 0.0 or _PLAIN_FLOAT_MIN <= abs(item) < _PLAIN_FLOAT_MAX):
            continue
        new: Any
        if kind is dict:
            new = _plain_object(item, depth + 1, tagged)
        elif kind is list:
            new = _plain_array(item, depth + 1, tagged)
        else:
            new = _plain_scalar(item, kind, tagged)
        if new is not item:
            fields = fields if fields is not None else dict(value)
            fields[key] = new
    result = value if fields is None else fields
    if len(result) == 2 and result.keys() == _TAG_KEYS:
        return {"_type_": ObjectAsPairs.name, "_data_": ObjectAsPairs().encode(result)}
    return result


def _float_text(value: float) -> bytes:
    """A float as the stdlib encoder writes it (allow_nan=True)."""
    if value != value:
        return b"NaN"
    if value == float("inf"):
        return b"Infinity"
    if value == -float("inf"):
        return b"-Infinity"
    return float.__repr__(value).encode()


def _escaped(value: Any, depth: int) -> Any:
    """`value` with tag-shaped objects escaped; the very same object when nothing needed it.

    Subclasses of dict and list, and tuples, are containers too (the stdlib writes them as
    objects and arrays): a tag-shaped OrderedDict, or one inside a tuple, would otherwise be
    stored as a tag and never read back. (The fast path sends all of them here.)
    """
    if not isinstance(value, (dict, list, tuple)):
        return value
    if depth >= MAX_NESTING:
        raise UnstorableValue(f"a value is nested more than {MAX_NESTING} levels deep")
    # Copy only on a change: nearly every event has nothing to escape, and a dataset of
    # 100,000 numbers should cost one pass over it, not a copy.
    if not isinstance(value, dict):
        copied: list[Any] | None = None
        for index, item in enumerate(value):
            if isinstance(item, (dict, list, tuple)):
                new = _escaped(item, depth + 1)
                if new is not item:
                    copied = copied if copied is not None else list(value)
                    copied[index] = new
        return value if copied is None else copied
    fields: dict[str, Any] | None = None
    for key, item in value.items():
        if isinstance(item, (dict, list, tuple)):
            new = _escaped(item, depth + 1)
            if new is not item:
                fields = fields if fields is not None else dict(value)
                fields[key] = new
    result = value if fields is None else fields
    if len(result) == 2 and result.keys() == _TAG_KEYS:
        return {"_type_": ObjectAsPairs.name, "_data_": ObjectAsPairs().encode(result)}
    return result
