"""Retention: purging finished tasks older than a cutoff, in capped batches, resumably.

The maintenance role calls `Purger.purge_finished_before` on its schedule (AGENTTASKS_RETENTION);
`agenttasks purge` calls it by hand. Each batch is one save of deletion records and one
transaction of deletes (deletion.py); a killed run leaves intent rows the next call finishes
first. Candidates come from the tasks read model (finished, `completed_at` before the cutoff),
and each is checked against its stored events before it goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from agenttasks.application.store import EventStore, history
from agenttasks.application.tasks import TaskNotFound
from agenttasks.deletion import Candidate, Deleter
from agenttasks.domain.rules import FINISHED, RuleViolation

MAX_LIMIT = 1_000_000  # tasks one call may purge, whatever it is asked
# Finished before the cutoff, and not being deleted already (deletion.TABLE).
_ELIGIBLE = (
    "SELECT {columns} FROM tasks WHERE status = ANY(%s) AND completed_at < %s"
    " AND id NOT IN (SELECT task_id FROM task_deletions)"
)


@dataclass(frozen=True)
class PurgeReport:
    """What a purge did (or would do, dry run): counts only, never content."""

    tasks: int
    events: int
    batches: int
    remaining: bool  # `limit` stopped it before the last eligible task
    dry_run: bool
    resumed: int = 0  # deletions a killed run had left half done, finished first
    skipped: int = 0  # eligible by the read model, refused by the store's events
    stream_pending: int = 0  # deleted tasks whose stream messages the relay has yet to purge


class Purger:
    """Purges finished tasks whose finish time is before a cutoff (see the module doc)."""

    def __init__(self, store: EventStore, batch: int) -> None:
        self.deleter = Deleter(store)
        self.store = store
        self.batch = max(1, batch)
        recorder: Any = store.recorder
        self._datastore: Any = recorder.datastore

    def purge_finished_before(
        self, cutoff: datetime, *, dry_run: bool, actor: str, limit: int
    ) -> PurgeReport:
        """Purges (or counts, dry run) up to `limit` finished tasks that ended before `cutoff`."""
        limit = max(0, min(limit, MAX_LIMIT))
        if dry_run:
            return self._count(cutoff, limit)
        resumed = self.deleter.finish_interrupted()
        tasks = events = batches = 0
        refused: list[UUID] = []
        while tasks < limit:
            ids = self._eligible(cutoff, min(self.batch, limit - tasks), refused)
            if not ids:
                break
            candidates: list[Candidate] = []
            for task_id in ids:
                try:
                    candidates.append(
                        self.deleter.check(
                            task_id, history(self.store, task_id), actor=actor, reason="retention"
                        )
                    )
                except (TaskNotFound, RuleViolation):
                    refused.append(task_id)  # changed since the read model saw it: not now
            deleted = self.deleter.delete_checked(candidates)
            batches += 1
            tasks += len(deleted)
            events += sum(d.events for d in deleted)
        remaining = tasks >= limit and bool(self._eligible(cutoff, 1, refused))
        return PurgeReport(
            tasks,
            events,
            batches,
            remaining,
            dry_run=False,
            resumed=resumed,
            skipped=len(refused),
            stream_pending=self.deleter.pending_stream(),
        )

    def _eligible(self, cutoff: datetime, count: int, refused: list[UUID]) -> list[UUID]:
        with self._datastore.transaction(commit=False) as cursor:
            cursor.execute(
                _ELIGIBLE.format(columns="id") + " AND NOT id = ANY(%s) ORDER BY completed_at, id"
                " LIMIT %s",
                (sorted(FINISHED), cutoff, refused, count),
            )
            return [row["id"] for row in cursor.fetchall()]

    def _count(self, cutoff: datetime, limit: int) -> PurgeReport:
        # A task's version is its number of stored events.
        eligible = _ELIGIBLE.format(columns="version") + " ORDER BY completed_at, id"
        with self._datastore.transaction(commit=False) as cursor:
            cursor.execute(
                f"SELECT count(*) AS n, coalesce(sum(version), 0) AS events"  # noqa: S608
                f" FROM ({eligible} LIMIT %s) AS e",
                (sorted(FINISHED), cutoff, limit),
            )
            row = cursor.fetchone()
            cursor.execute(
                f"SELECT count(*) AS n FROM ({eligible} OFFSET %s LIMIT 1) AS e",  # noqa: S608
                (sorted(FINISHED), cutoff, limit),
            )
            beyond = cursor.fetchone()
        tasks = int(row["n"])
        batches = -(-tasks // self.batch)
        return PurgeReport(tasks, int(row["events"]), batches, bool(beyond["n"]), dry_run=True)
