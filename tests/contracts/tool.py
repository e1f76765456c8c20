"""Records a change of the event contracts: `.venv/bin/python -m tests.contracts.tool`.

Rewrites events.snapshot.json when the event classes changed (with the next version number)
and writes the fixture of every sample in samples.CURRENT that has none yet. It never rewrites
an existing fixture: those are what is stored in databases out there. It prints the changelog
heading that docs/events.md then needs (see "Changing an event" there).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from agenttasks.application.store import open_event_store
from tests.contracts.catalogue import (
    FIXTURES_DIR,
    SNAPSHOT_PATH,
    class_version,
    current_events,
    differences,
    digest,
    load_snapshot,
)
from tests.contracts.samples import CURRENT


def fixture_of(event: Any) -> dict[str, Any]:
    """The stored form of `event`, exactly as the EventStore's mapper writes it."""
    stored = open_event_store().mapper.to_stored_event(event)
    return {
        "topic": stored.topic,
        "originator_id": str(stored.originator_id),
        "originator_version": stored.originator_version,
        "state": stored.state.decode("utf8"),
    }


def write_json(path: Any, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf8")


def update_snapshot() -> None:
    events = current_events()
    old: dict[str, Any] = (
        load_snapshot() if SNAPSHOT_PATH.exists() else {"version": 0, "digest": "", "events": {}}
    )
    if old["events"] == events:
        print(f"snapshot unchanged: version {old['version']} ({old['digest']})")
        return
    for line in differences(old["events"], events):
        print("  " + line)
    version = old["version"] + 1
    write_json(SNAPSHOT_PATH, {"version": version, "digest": digest(events), "events": events})
    print(f"wrote {SNAPSHOT_PATH.name}; add to the changelog in docs/events.md:")
    print(f"### Version {version} (snapshot {digest(events)})")


def write_missing_fixtures() -> None:
    FIXTURES_DIR.mkdir(exist_ok=True)
    for name, event in CURRENT.items():
        cls = type(event)
        prefix = f"{cls.__qualname__}.v{class_version(cls)}."
        if not name.startswith(prefix):
            sys.exit(f"sample {name!r} must be named {prefix}<case> (its class version)")
        path = FIXTURES_DIR / f"{name}.json"
        if not path.exists():
            write_json(path, fixture_of(event))
            print(f"wrote fixtures/{path.name}")


if __name__ == "__main__":
    update_snapshot()
    write_missing_fixtures()
