"""Group commit on the event loop: the events of concurrent creates in one `append_async`.

`GroupCommitter` batches saves made on threads: each API create paid a hop to a command thread
and back, a wait on the committer's Condition, and the library's sync connection pool. Here a
caller on the loop queues its aggregate's stored events and awaits a future; one flusher task
appends whatever is queued in one call of the store's append function
(`application/store.append_async`, the same function and lock as every other append, so
notification ids still commit in order) on one autocommit connection of the loop, and while it
waits the next batch queues. A batch that fails is retried request by request, as
`GroupCommitter._flush` does, so only the request at fault hears of its error (a version clash
is eventsourcing's IntegrityError, which the caller of an idempotent create relies on).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import psycopg
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, StoredEvent

from agenttasks.application.append_lock import AppendLockTimeout
from agenttasks.application.loop_session import LoopSession, session_lost
from agenttasks.application.store import EventStore, OrderedAppendRecorder, append_async


@dataclass
class _Request:
    events: list[StoredEvent]
    outcome: asyncio.Future[list[int]]


class LoopCommitter:
    """Appends aggregates' new events for callers on one event loop, a batch per transaction."""

    def __init__(self, store: EventStore, database_url: str, max_batch: int = 500) -> None:
        recorder = store.recorder
        if not isinstance(recorder, OrderedAppendRecorder):
            raise TypeError("the loop's group commit needs the Postgres event store")
        self._store = store
        self._recorder = recorder
        self._session = LoopSession(database_url)
        self._max_batch = max_batch
        self._queue: list[_Request] = []
        self._flusher: asyncio.Task[None] | None = None
        self.transactions = 0  # for benchmarks and tests: how many appends the requests took

    async def save(self, aggregate: Aggregate) -> list[int]:
        """Appends the aggregate's pending events; their notification ids, in order."""
        mapper = self._store.mapper
        events = [mapper.to_stored_event(e) for e in aggregate.collect_events()]
        loop = asyncio.get_running_loop()
        request = _Request(events, loop.create_future())
        self._queue.append(request)
        if self._flusher is None:
            # Runs once the requests arriving in this turn of the loop have queued too.
            self._flusher = loop.create_task(self._flush_all())
        # A caller cancelled meanwhile cancels only its future: the flush goes on for the rest.
        return await request.outcome

    async def close(self) -> None:
        """Closes the loop's connection once the appends under way have finished."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self._session.drop()

    async def _flush_all(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                await self._flush(batch)
        finally:
            self._flusher = None

    async def _flush(self, batch: list[_Request]) -> None:
        try:
            await self._append_together(batch)
        except AppendLockTimeout as error:
            # Nothing was stored, and each request alone would wait the timeout once more.
            for request in batch:
                _fail(request, error)
        except Exception as error:
            if len(batch) == 1:
                _fail(batch[0], error)
                return
            # A clash (two creates with one key) or a value the store refuses is one request's;
            # each is tried alone so nobody else's fails with it. When the database is down,
            # each hears of that instead.
            for request in batch:
                try:
                    await self._append_together([request])
                except Exception as alone:  # delivered to the caller whose request it was
                    _fail(request, alone)

    async def _append_together(self, batch: list[_Request]) -> None:
        events = [e for r in batch for e in r.events]
        ids = await self._append(events)
        self.transactions += 1
        end = 0
        for request in batch:
            end += len(request.events)
            if not request.outcome.done():
                request.outcome.set_result(ids[end - len(request.events) : end])

    async def _append(self, events: list[StoredEvent]) -> list[int]:
        connection = await self._session.get()
        try:
            return await append_async(connection, self._recorder, events)
        except IntegrityError:
            raise
        except psycopg.OperationalError as error:
            if not (connection.broken or connection.closed or session_lost(error)):
                raise  # a lock or statement timeout: not waited out twice
            # Postgres restarted under the session: one more try on a new one, as the store's
            # sync append does. Safe: an append that did commit before the session broke
            # clashes on its versions (IntegrityError) the second time, never stores twice.
            await self._session.drop()
            return await append_async(await self._session.get(), self._recorder, events)


def _fail(request: _Request, error: BaseException) -> None:
    if not request.outcome.done():
        request.outcome.set_exception(error)
