"""The catalogue of every stored event class, found by walking the domain, and its snapshot.

The snapshot is what a stored event depends on: its topic (`module:Qualname`, stored with it),
its fields and their types and defaults, its `class_version`, and the kind name that subjects
and payloads use. `events.snapshot.json` freezes it; docs/events.md keeps the changelog.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import pkgutil
from pathlib import Path
from typing import Any

from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic

import agenttasks.domain
from agenttasks.domain.template import TEMPLATE_KINDS
from agenttasks.domain.updates import KINDS

HERE = Path(__file__).parent
SNAPSHOT_PATH = HERE / "events.snapshot.json"
FIXTURES_DIR = HERE / "fixtures"
DOCS_PATH = HERE.parents[1] / "docs" / "events.md"


def aggregates() -> list[type[Aggregate]]:
    """Every aggregate class defined in a module of agenttasks.domain (a new one is found too)."""
    found: list[type[Aggregate]] = []
    for info in pkgutil.iter_modules(agenttasks.domain.__path__, "agenttasks.domain."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Aggregate)
                and value.__module__ == module.__name__
            ):
                found.append(value)
    return sorted(found, key=get_topic)


def event_classes() -> list[type[Aggregate.Event]]:
    """Every event class nested in an aggregate, in definition order."""
    found: list[type[Aggregate.Event]] = []
    for aggregate in aggregates():
        for name, value in vars(aggregate).items():
            # eventsourcing gives each aggregate its own `Event` base class; nothing triggers
            # it, so nothing of that class is ever stored.
            if isinstance(value, type) and issubclass(value, Aggregate.Event) and name != "Event":
                found.append(value)
    return found


def class_version(cls: type[Any]) -> int:
    """The version eventsourcing stores with the event (1 when the class does not say)."""
    version: int = getattr(cls, "class_version", 1)
    return version


def describe_field(field: dataclasses.Field[Any]) -> str:
    """`type` or `type = default`, as the class declares it."""
    if field.default is not dataclasses.MISSING:
        return f"{field.type} = {field.default!r}"
    if field.default_factory is not dataclasses.MISSING:
        return f"{field.type} = {getattr(field.default_factory, '__name__', 'factory')}()"
    return str(field.type)


def current_events() -> dict[str, dict[str, Any]]:
    """The snapshot of the event classes as the code defines them now, by stored topic."""
    kinds = {**KINDS, **TEMPLATE_KINDS}
    return {
        get_topic(cls): {
            "class_version": class_version(cls),
            "kind": kinds.get(cls),
            "fields": {f.name: describe_field(f) for f in dataclasses.fields(cls)},
        }
        for cls in event_classes()
    }


def digest(events: dict[str, Any]) -> str:
    """A short fingerprint of a snapshot; field and class order do not count."""
    text = json.dumps(events, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf8")).hexdigest()[:12]


def load_snapshot() -> dict[str, Any]:
    """The checked-in snapshot: version, digest and events."""
    loaded: dict[str, Any] = json.loads(SNAPSHOT_PATH.read_text(encoding="utf8"))
    return loaded


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What changed between two snapshots, a line each, for a person to read."""
    lines = [
        f"removed event class {topic} (stored events of it no longer load)"
        for topic in old
        if topic not in new
    ]
    lines += [f"new event class {topic}" for topic in new if topic not in old]
    for topic in (t for t in new if t in old):
        before, after = old[topic], new[topic]
        for key in ("class_version", "kind"):
            if before[key] != after[key]:
                lines.append(f"{topic}: {key} {before[key]!r} -> {after[key]!r}")
        for name, declared in after["fields"].items():
            was = before["fields"].get(name)
            if was is None:
                lines.append(f"{topic}: new field {name}: {declared}")
            elif was != declared:
                lines.append(f"{topic}: field {name} retyped: {was} -> {declared}")
        lines += [
            f"{topic}: removed field {name}"
            for name in before["fields"]
            if name not in after["fields"]
        ]
    return lines
