"""Attempt 1 started on the worker's event loop: one guarded append of the Started events.

`TaskCommands.start_offered` runs on a store thread: a hop there, a pool checkout and the
two-row read, the group committer's append, a hop back. Here Started is triggered on the
message's copy as soon as the attempt asks (its timestamp is then), and the starts of the
attempts that begin together (one scheduling pass) are one guarded append
(`application/store.append_after_async`) on one autocommit connection of the loop, with no
thread and no read before it. The rules are `start_offered`'s, checked by the append under
the table lock: a task's Started is stored only while the store holds its Created at the
message's position and nothing after it (a deleted and re-created task has the same id and a
version 1 again, at another position). A start refused there stores nothing and is left to
the caller's ordinary start, which loads the task and lets the aggregate decide.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import psycopg
from eventsourcing.persistence import IntegrityError

from agenttasks.application.append_lock import AppendLockTimeout
from agenttasks.application.loop_session import LoopSession
from agenttasks.application.store import EventStore, OrderedAppendRecorder, append_after_async
from agenttasks.application.tasks import Written
from agenttasks.domain.task import Task, command_trace
from agenttasks.observability import context


@dataclass
class _Start:
    offered: Task
    position: int
    outcome: asyncio.Future[Written | None]
    events: list[Any] = field(default_factory=list)


class LoopStarts:
    """Starts attempt 1 from its created message's copy on the event loop, in batches."""

    def __init__(self, store: EventStore, database_url: str) -> None:
        recorder = store.recorder
        if not isinstance(recorder, OrderedAppendRecorder):
            raise TypeError("starts on the loop need the Postgres event store")
        self._store = store
        self._recorder = recorder
        self._session = LoopSession(database_url)
        self._queue: list[_Start] = []
        self._flusher: asyncio.Task[None] | None = None

    async def start(self, offered: Task, position: int, worker_id: str) -> Written | None:
        """The attempt started from the copy; None when the copy could not be used.

        None means nothing was stored: the caller starts the attempt the ordinary way.
        """
        loop = asyncio.get_running_loop()
        request = _Start(offered, position, loop.create_future())
        try:
            # Now, in the attempt's context: Started has the message's arrival as its time
            # and records the attempt's trace.
            self._apply(request, worker_id)
        except Exception:  # refused by the copy: the stored task decides (the ordinary start)
            return None
        self._queue.append(request)
        if self._flusher is None:
            # Runs after the attempts launched in this pass have queued their starts too.
            self._flusher = loop.create_task(self._flush_all())
        return await request.outcome

    async def close(self) -> None:
        """Closes the loop's connection (the starts under way finish first)."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self._session.drop()

    async def _flush_all(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await self._flush(batch)
                    for request in batch:  # its append clashed: nothing of it was stored
                        _settle(request.outcome, None)
                except Exception as error:
                    # The connection broke, perhaps after a commit: as when the store thread's
                    # start fails, the caller offers the message again and a redelivery finds
                    # out what happened (docs/workers.md, a lost worker).
                    if not isinstance(error, AppendLockTimeout):  # that session is still fine
                        await self._session.drop()
                    for request in batch:
                        if not request.outcome.done():  # nor cancelled by its caller
                            request.outcome.set_exception(error)
        finally:
            self._flusher = None

    async def _flush(self, batch: list[_Start]) -> None:
        connection = await self._session.get()
        ready: dict[Any, _Start] = {}
        for request in batch:
            if request.offered.id in ready:  # a second copy of one task: one start is enough
                _settle(request.outcome, None)
            else:
                ready[request.offered.id] = request
        try:
            await self._append(connection, list(ready.values()))
        except IntegrityError:
            # Two writers of one version despite the guard (none take the table lock without
            # it today): each alone, so the others still start.
            if len(ready) == 1:
                return
            for request in ready.values():
                with contextlib.suppress(IntegrityError):
                    await self._append(connection, [request])

    def _apply(self, request: _Start, worker_id: str) -> None:
        """Triggers Started on the copy, recording the trace of the attempt's span."""
        token = command_trace.set(context.current_traceparent())
        try:
            request.offered.start(1, worker_id)
        finally:
            command_trace.reset(token)
        mapper = self._store.mapper
        request.events = [mapper.to_stored_event(e) for e in request.offered.collect_events()]

    async def _append(self, connection: psycopg.AsyncConnection[Any], ready: list[_Start]) -> None:
        positions = await append_after_async(
            connection,
            self._recorder,
            [e for r in ready for e in r.events],
            {r.offered.id: r.position for r in ready},
        )
        end = 0
        for request in ready:
            end += len(request.events)
            position = positions[end - 1]
            if position is None:  # not the message's task as it was: the caller loads it
                _settle(request.outcome, None)
            else:
                written = Written(request.offered.id, position, task=request.offered)
                _settle(request.outcome, written)


def _settle(outcome: asyncio.Future[Written | None], value: Written | None) -> None:
    if not outcome.done():  # a caller cancelled meanwhile hears nothing
        outcome.set_result(value)
