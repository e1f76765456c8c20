"""`agenttasks purge`, and the deletions in `agenttasks audit`: counts and records, no content."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from agenttasks.application.store import EventStore, PositionedEvent
from agenttasks.deletion import deletion_records
from agenttasks.domain.deletion import TaskDeletion
from agenttasks.durations import format_duration, parse_duration
from agenttasks.settings import Settings, SettingsError

LISTED = 100  # deletions `audit --deletions` prints


def purge(settings: Settings, older_than: str | None, *, dry_run: bool) -> int:
    """Purges (or counts) finished tasks that ended more than `older_than` ago."""
    from agenttasks import bootstrap

    if older_than is None:
        age = settings.retention
        if age is None:
            raise SettingsError("AGENTTASKS_RETENTION is off: give --older-than DURATION")
    else:
        try:
            parsed = parse_duration(older_than)
        except ValueError as error:
            raise SettingsError(f"--older-than {older_than!r}: {error}") from None
        assert parsed is not None  # "off" is not allowed here
        age = parsed
    cutoff = datetime.now(UTC) - age
    with bootstrap.build_purger(settings) as purger:
        report = purger.purge_finished_before(cutoff, dry_run=dry_run, actor="cli", limit=_LIMIT)
    when = f"finished over {format_duration(age)} ago (before {cutoff.isoformat()})"
    if dry_run:
        print(
            f"would purge {report.tasks} task(s), {report.events} stored event(s), "
            f"in {report.batches} batch(es): tasks {when}"
            + ("; more remain past this run's limit" if report.remaining else "")
        )
        return 0
    print(
        f"purged {report.tasks} task(s), {report.events} stored event(s), in {report.batches} "
        f"batch(es): tasks {when}"
    )
    if report.resumed:
        print(f"finished {report.resumed} deletion(s) an earlier run had left half done")
    if report.skipped:
        print(f"skipped {report.skipped} task(s) that changed since the read model saw them")
    if report.stream_pending:
        print(
            f"{report.stream_pending} deleted task(s)' stream messages go once every read model "
            "has applied the deletion (the relay purges them)"
        )
    if report.remaining:
        print("more remain past this run's limit: run it again")
    return 0


_LIMIT = 1_000_000


def list_deletions(settings: Settings) -> int:
    """Prints the newest deletion records, newest first."""
    from agenttasks import bootstrap

    settings = bootstrap.resolve(settings)
    bootstrap.require_database(settings)
    with bootstrap.event_store(settings) as store:
        for item in deletion_records(store, limit=LISTED):
            print(_line(item))
    return 0


def print_deletion(store: EventStore, task_id: UUID) -> bool:
    """Prints the deletion record of `task_id`; False when it was never deleted."""
    records = deletion_records(store, task_id=task_id)
    for item in records:
        print(_line(item))
    return bool(records)


def _line(item: PositionedEvent) -> str:
    event: Any = item.event
    if not isinstance(event, TaskDeletion.Created):
        return f"{item.position:>8}  (an unreadable deletion record)"
    return (
        f"{item.position:>8}  {item.timestamp.isoformat()}  deleted task {event.task_id} "
        f"by {event.actor} ({event.reason}): {event.task_type}, {event.status}, owner "
        f"{event.owner}, {event.events} event(s) removed"
    )
