"""Group commit: the events of concurrent commands are appended in one transaction.

eventsourcing appends one transaction at a time under a table lock (that is what keeps the
notification log gap-safe for the relay), so one `save()` per command caps throughput near the
commit rate of a single client. Here the first waiting caller becomes the leader and saves what
everyone queued so far in one `save()`; the others wait for their share of the recordings.
If the combined save fails (two commands raced on one aggregate, or one command holds a value
the store refuses), each request is saved on its own, so only the command at fault sees the
error (the loser of a race retries with a fresh load).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Recording

from agenttasks.application.append_lock import AppendLockTimeout
from agenttasks.application.store import EventStore


@dataclass
class _Request:
    events: list[Any]
    done: bool = False
    recordings: list[Recording[UUID]] = field(default_factory=list)
    error: BaseException | None = None

    def outcome(self) -> list[Recording[UUID]]:
        if self.error is not None:
            raise self.error
        return self.recordings


class GroupCommitter:
    """Saves aggregates for many threads at once, in as few transactions as it can."""

    def __init__(self, store: EventStore, max_batch: int = 500) -> None:
        self.store = store
        self._max_batch = max_batch
        self._queue: list[_Request] = []
        self._flushing = False
        self._changed = threading.Condition()
        self.transactions = 0  # for benchmarks: how many appends the requests took

    @property
    def queued(self) -> int:
        """How many requests wait for the next transaction."""
        with self._changed:
            return len(self._queue)

    def save(self, *aggregates: Aggregate) -> list[Recording[UUID]]:
        """Appends the aggregates' pending events; returns their recordings, like `store.save`."""
        request = _Request([e for a in aggregates for e in a.collect_events()])
        with self._changed:
            self._queue.append(request)
        while True:
            with self._changed:
                while self._flushing and not request.done:
                    self._changed.wait()
                if request.done:
                    return request.outcome()
                self._flushing = True
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
            try:
                self._flush(batch)
            finally:
                with self._changed:
                    self._flushing = False
                    self._changed.notify_all()

    def _flush(self, batch: list[_Request]) -> None:
        try:
            self._save_together(batch)
        except IntegrityError:
            for request in batch:
                self._save_alone(request)
        except AppendLockTimeout as error:
            # Nothing was stored, and each request alone would wait the timeout once more.
            for request in batch:
                request.error, request.done = error, True
        except Exception as error:
            if len(batch) == 1:
                batch[0].error, batch[0].done = error, True
                return
            # One request's events may be what failed (a value the store refuses): each is
            # tried alone, so nobody else's command fails with it. When the database is down,
            # each hears of that instead.
            for request in batch:
                self._save_alone(request)

    def _save_together(self, batch: list[_Request]) -> None:
        recordings = self.store.save(*[e for r in batch for e in r.events])
        self.transactions += 1
        start = 0
        for request in batch:
            end = start + len(request.events)
            request.recordings, request.done = recordings[start:end], True
            start = end

    def _save_alone(self, request: _Request) -> None:
        try:
            request.recordings = self.store.save(*request.events)
            self.transactions += 1
        except Exception as error:  # delivered to the caller whose command it was
            request.error = error
        request.done = True
