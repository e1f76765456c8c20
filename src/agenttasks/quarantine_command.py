"""`agenttasks quarantine list|retry`: what consumers set aside, and taking it up after a fix.

Retry never re-publishes: the stream is append-only and in order, and in place of a skipped
event it already carries the relay's SkippedEvent marker, which every consumer has passed.
What reads the event again is the event store, through `agenttasks replay`: so a retry
re-decodes (and maps) each entry's stored event, and when all of that now works, rebuilds the
read models that missed it (every one for a relay entry, the projector's own for a projector
entry) and marks the entries resolved. An entry that still fails counts an attempt and stays.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from agenttasks import quarantine
from agenttasks.settings import Settings

RELAY = "relay"
PROJECTOR_PREFIX = "projector-"


def list_entries(settings: Settings, *, include_resolved: bool = False) -> int:
    """Prints the quarantined entries (unresolved unless asked); 1 when there are any."""
    from agenttasks.bootstrap import require_database, resolve

    database_url = require_database(resolve(settings))
    with _cursor(database_url) as cursor:
        quarantine.ensure_table(cursor)
        entries = quarantine.pending(cursor, include_resolved=include_resolved)
    if not entries:
        print("the quarantine is empty")
        return 0
    print(
        f"{'position':>10}  {'consumer':<22} {'attempts':>8}  {'first seen':<25} originator, error"
    )
    for entry in entries:
        state = f"  (resolved {entry.resolved_at.isoformat()})" if entry.resolved_at else ""
        print(
            f"{entry.position:>10}  {entry.consumer:<22} {entry.attempts:>8}  "
            f"{entry.first_seen.isoformat():<25} {entry.originator_id}, {entry.error}{state}"
        )
    return 1 if any(entry.resolved_at is None for entry in entries) else 0


def retry(settings: Settings, positions: Sequence[int] = ()) -> int:
    """Re-processes unresolved entries (all, or those at `positions`); 1 if any still fail."""
    from agenttasks.application.bus_payloads import mapper_for
    from agenttasks.bootstrap import event_store, projections, require_database, resolve
    from agenttasks.cli import replay

    settings = resolve(settings)
    database_url = require_database(settings)
    with _cursor(database_url) as cursor:
        quarantine.ensure_table(cursor)
        entries = quarantine.pending(cursor, positions=list(positions) or None)
    if not entries:
        print("nothing to retry")
        return 0
    readable: list[quarantine.Quarantined] = []
    with event_store(settings) as store, _cursor(database_url) as cursor:
        mapper = mapper_for(store)
        for entry in entries:
            failure = _still_failing(store, mapper, entry.position)
            if failure is None:
                readable.append(entry)
                continue
            quarantine.record(
                cursor,
                consumer=entry.consumer,
                position=entry.position,
                originator_id=entry.originator_id,
                error=failure,
            )
            print(f"{entry.position} ({entry.consumer}): still fails: {failure}")
    models = _models_to_rebuild(readable, list(projections()))
    status = 0
    for name in models:
        status = max(status, replay(settings, name, verify=False))
    if status:
        print("a replay failed: nothing marked resolved", file=sys.stderr)
        return 1
    with _cursor(database_url) as cursor:
        for entry in readable:
            quarantine.resolve(cursor, consumer=entry.consumer, position=entry.position)
            print(f"{entry.position} ({entry.consumer}): resolved")
    return 1 if len(readable) < len(entries) else 0


def _still_failing(store: Any, mapper: Any, position: int) -> str | None:
    """None when the event at `position` now decodes and maps; else why not (our words)."""
    from agenttasks.application.undecodable import Undecodable, decoded

    if position <= 0:
        return None  # a projector's undecodable stream message: the replay reads the store
    found = store.recorder.select_notifications(start=position, limit=1, inclusive_of_start=True)
    if not found or found[0].id != position:
        return "no stored event at this position"
    event = decoded(store.mapper, found[0])
    if isinstance(event, Undecodable):
        return f"undecodable: {event.error}"
    try:
        mapper.map(event, position)
    except Exception as error:  # the same check the relay makes before publishing
        return f"unmappable: {quarantine.describe(error)}"
    return None


def _models_to_rebuild(entries: list[quarantine.Quarantined], known: list[str]) -> list[str]:
    """The read models that missed these entries' events, in a stable order."""
    wanted: set[str] = set()
    for entry in entries:
        if entry.consumer == RELAY:
            wanted.update(known)  # every read model got the marker instead of the event
        elif entry.consumer.startswith(PROJECTOR_PREFIX):
            name = entry.consumer.removeprefix(PROJECTOR_PREFIX)
            if name in known:
                wanted.add(name)
    return [name for name in known if name in wanted]


@contextmanager
def _cursor(database_url: str) -> Iterator[psycopg.Cursor[Any]]:
    """A cursor whose transaction commits when the block ends (rolls back on an error)."""
    with psycopg.connect(database_url) as connection, connection.cursor() as cursor:
        yield cursor
