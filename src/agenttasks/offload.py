"""The hop from an event loop to the synchronous event store and back, cheaper than run_in_executor.

The API's commands and the worker's reports are blocking store commands run on threads.
`loop.run_in_executor` pays, per call and on the event loop (the worker's busiest thread), a
ThreadPoolExecutor work item and concurrent Future, a chain to an asyncio Future (done
callbacks, a state copy) and one wake-up of the loop through its self-pipe. The group
committer finishes the saves of many attempts at once, so their outcomes arrive in bursts:
here a finished call only appends its outcome to a list, and one wake-up of the loop settles
the whole burst. `StoreThreads` also replaces the executor's work items with a plain queue.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

T = TypeVar("T")
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]
_Call = tuple[
    asyncio.AbstractEventLoop,
    "asyncio.Future[Any]",
    contextvars.Context,
    Callable[..., Any],
    tuple[Any, ...],
    dict[str, Any],
]


class Offload:
    """Runs blocking calls on an executor; their outcomes reach the event loop in batches."""

    def __init__(self, executor: Executor | None) -> None:
        self._executor = executor
        self._lock = threading.Lock()
        # Finished calls not yet handed to their loop; a loop is in here while a drain is due.
        self._finished: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}

    async def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`function(*args, **kwargs)` on a thread, with the calling task's context variables.

        As with run_in_executor, a call whose caller is cancelled before it began never runs;
        one already running finishes and its outcome is dropped.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        # The command must see the attempt's trace and task id (run_in_executor drops them).
        self._enqueue((loop, future, contextvars.copy_context(), function, args, kwargs))
        return await future

    def _enqueue(self, call: _Call) -> None:
        assert self._executor is not None
        self._executor.submit(self._run, call)

    def _run(self, call: _Call) -> None:
        loop, future, context, function, args, kwargs = call
        if future.cancelled():  # read across threads: at worst the call runs, as if begun
            return
        try:
            outcome: _Outcome = (future, context.run(function, *args, **kwargs), None)
        except BaseException as error:  # delivered to the caller, whatever it is
            outcome = (future, None, error)
        with self._lock:
            waiting = self._finished.get(loop)
            if waiting is not None:  # a drain is already due on that loop: it takes this too
                waiting.append(outcome)
                return
            self._finished[loop] = [outcome]
        try:
            loop.call_soon_threadsafe(self._drain, loop)
        except RuntimeError:  # the caller's loop is closed: nobody waits for the outcome
            with self._lock:
                self._finished.pop(loop, None)

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            outcomes = self._finished.pop(loop, [])
        for future, value, error in outcomes:
            if future.cancelled():
                continue
            if error is None:
                future.set_result(value)
            else:  # asyncio refuses StopIteration as a future's exception: the caller would hang
                stop = isinstance(error, StopIteration)
                future.set_exception(RuntimeError(repr(error)) if stop else error)


class StoreThreads(Offload, Executor):
    """An Offload with threads of its own (started as needed, at most `threads`).

    It is also an Executor, so code that uses `run_in_executor` (the watchdog) shares the
    same threads.
    """

    def __init__(self, threads: int, name: str = "store") -> None:
        super().__init__(None)
        self._max = threads
        self._name = name
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for work (under self._lock)
        self._closed = False

    def _enqueue(self, call: _Call) -> None:
        self._put(lambda: self._run(call))

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Runs `fn` on one of the threads; its outcome in a concurrent Future."""
        future: Future[T] = Future()

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as error:
                future.set_exception(error)

        self._put(work)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Lets the threads finish what is queued, then stop."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        if wait:
            for thread in threads:
                thread.join()

    def _put(self, work: Callable[[], None]) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the store threads are shut down")
            spawn = self._idle == 0 and len(self._threads) < self._max
            if spawn:
                thread = threading.Thread(
                    target=self._serve, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
            else:
                self._idle -= 1  # one waiting thread will take this
        self._queue.put(work)
        if spawn:
            thread.start()

    def _serve(self) -> None:
        while True:
            work = self._queue.get()
            if work is None:
                return
            work()
            with self._lock:
                self._idle += 1
