"""Threads for the API's synchronous commands: one hop there and one back, nothing more.

`loop.run_in_executor` makes a concurrent Future (a Condition and its locks), an asyncio Future
chained to it and a callback each way for every call: ~9% of the API's time per create
(PERF12). Here a call is a queue entry and an asyncio Future that the thread completes with one
`call_soon_threadsafe`. Threads start as calls need them, up to the limit, like a
ThreadPoolExecutor's; enough of them at once let the group committer save many commands in one
transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_Job = tuple[
    asyncio.AbstractEventLoop,
    "asyncio.Future[Any]",
    contextvars.Context,
    Callable[..., Any],
    tuple[Any, ...],
]


class Offload:
    """Runs synchronous callables on up to `threads` threads for an event loop."""

    def __init__(self, threads: int, name: str = "command") -> None:
        if threads < 1:
            raise ValueError("an offload needs at least one thread")
        self._limit = threads
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # one release per thread waiting for a job
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """Runs `function(*args)` on a thread, with the caller's context variables."""
        if self._closed:
            raise RuntimeError("the command threads are shut down")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        # The request's context (its trace: the events it stores record it) goes along.
        self._jobs.put((loop, future, contextvars.copy_context(), function, args))
        if not self._idle.acquire(blocking=False):
            self._start_thread()
        return await future

    def shutdown(self, wait: bool = False) -> None:
        """Stops the threads once the calls already queued have run."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)
        if wait:
            for thread in threads:
                thread.join()

    def _start_thread(self) -> None:
        with self._lock:
            if len(self._threads) >= self._limit or self._closed:
                return  # a busy thread takes the job when it is done
            thread = threading.Thread(
                target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            loop, future, context, function, args = job
            job = None
            # A caller that went away (its request cancelled) before the call began: skipped,
            # as a ThreadPoolExecutor skips a cancelled future that has not started.
            if not future.cancelled():
                try:
                    result = context.run(function, *args)
                except BaseException as error:  # handed to the awaiting caller
                    _complete(loop, future, error, failed=True)
                else:
                    _complete(loop, future, result, failed=False)
            self._idle.release()


def _complete(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], value: Any, *, failed: bool
) -> None:
    def settle() -> None:
        if future.done():  # cancelled meanwhile: nobody waits for the answer
            return
        if failed:
            # asyncio refuses StopIteration as a future's exception: the caller would hang.
            error = RuntimeError(repr(value)) if isinstance(value, StopIteration) else value
            future.set_exception(error)
        else:
            future.set_result(value)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left to hear it
        loop.call_soon_threadsafe(settle)
