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
"""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import JSONTranscoder, Transcoding

# Far below the interpreter's recursion limit (1000 frames, which decoding shares with the
# caller's stack), far above anything a real config, schema or result needs.
MAX_NESTING = 100

_TAG_KEYS = frozenset({"_type_", "_data_"})


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
        self.register(ObjectAsPairs())

    def encode(self, obj: Any) -> bytes:
        text = self.encoder.encode(_escaped(obj, 0))
        try:
            return text.encode("utf8")
        except UnicodeEncodeError:
            # Lone surrogates (from a model's JSON "\ud800", say): a pair joins into its
            # character, a lone one becomes U+FFFD, so the stored text is valid UTF-8.
            return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf8")


def _escaped(value: Any, depth: int) -> Any:
    """`value` with tag-shaped objects escaped; the very same object when nothing needed it."""
    kind = type(value)
    if kind is not dict and kind is not list:
        return value
    if depth >= MAX_NESTING:
        raise UnstorableValue(f"a value is nested more than {MAX_NESTING} levels deep")
    # Copy only on a change: nearly every event has nothing to escape, and a dataset of
    # 100,000 numbers should cost one pass over it, not a copy.
    if kind is list:
        copied: list[Any] | None = None
        for index, item in enumerate(value):
            if type(item) is dict or type(item) is list:
                new = _escaped(item, depth + 1)
                if new is not item:
                    copied = copied if copied is not None else list(value)
                    copied[index] = new
        return value if copied is None else copied
    fields: dict[str, Any] | None = None
    for key, item in value.items():
        if type(item) is dict or type(item) is list:
            new = _escaped(item, depth + 1)
            if new is not item:
                fields = fields if fields is not None else dict(value)
                fields[key] = new
    result = value if fields is None else fields
    if len(result) == 2 and result.keys() == _TAG_KEYS:
        return {"_type_": ObjectAsPairs.name, "_data_": ObjectAsPairs().encode(result)}
    return result
