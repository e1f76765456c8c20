"""Every stored event class is frozen: a change fails here until it is recorded and described."""

from __future__ import annotations

import re

from tests.contracts.catalogue import (
    DOCS_PATH,
    current_events,
    differences,
    digest,
    event_classes,
    load_snapshot,
)

CHANGELOG_HEADING = "## Changelog of the stored events"
ENTRY = re.compile(r"^### Version (\d+) \(snapshot ([0-9a-f]{12})\)$")
HOW_TO = (
    "Event classes are storage contracts. If the change is meant (docs/events.md, 'Changing an "
    "event'), run `.venv/bin/python -m tests.contracts.tool` and add the changelog entry it "
    "prints to docs/events.md."
)


def changelog() -> list[tuple[int, str, list[str]]]:
    """(version, digest, body lines) of each entry of docs/events.md's changelog, in order."""
    lines = DOCS_PATH.read_text(encoding="utf8").splitlines()
    assert CHANGELOG_HEADING in lines, f"docs/events.md has no section {CHANGELOG_HEADING!r}"
    entries: list[tuple[int, str, list[str]]] = []
    for line in lines[lines.index(CHANGELOG_HEADING) + 1 :]:
        if line.startswith("## "):
            break
        if match := ENTRY.match(line):
            entries.append((int(match[1]), match[2], []))
        elif line.startswith("###"):
            raise AssertionError(
                f"changelog heading not of the form 'Version N (snapshot D)': {line}"
            )
        elif entries and line.strip():
            entries[-1][2].append(line)
    return entries


def test_the_event_classes_match_the_checked_in_snapshot() -> None:
    recorded = load_snapshot()["events"]
    changes = differences(recorded, current_events())
    assert not changes, "\n".join(["the stored event classes changed:", *changes, HOW_TO])


def test_the_snapshot_file_states_its_own_digest() -> None:
    snapshot = load_snapshot()
    assert snapshot["digest"] == digest(snapshot["events"]), HOW_TO


def test_the_newest_changelog_entry_is_the_snapshot_in_force() -> None:
    snapshot = load_snapshot()
    entries = changelog()
    assert entries, "docs/events.md's changelog has no entry"
    version, recorded_digest, body = entries[0]
    assert (version, recorded_digest) == (snapshot["version"], digest(current_events())), HOW_TO
    assert body, f"changelog entry of version {version} says nothing about the change"


def test_the_changelog_has_every_version_newest_first() -> None:
    versions = [version for version, _, _ in changelog()]
    assert versions == list(range(load_snapshot()["version"], 0, -1))


def test_the_walk_finds_the_events_the_catalogue_lists() -> None:
    # Guards the walk itself: if it found nothing, the snapshot tests would compare nothing.
    names = {cls.__qualname__ for cls in event_classes()}
    assert {"Task.Created", "Task.Noted", "Template.Revised", "Template.Archived"} <= names
    assert "Task.Event" not in names
