"""Page extraction in a few child processes, each answer under a deadline.

trafilatura (lxml, and Python's `re`) holds the GIL while it works: a 5 MB page of paragraphs
took 15 s on these machines, and one `re` call over a hostile page never lets another thread
run. In a thread of the worker that stalls its event loop and the heartbeats with it, so the
lease lapses and the redelivered message freezes the next worker too. A child has a GIL of its
own: the worker waits for its answer without blocking, and kills it at the deadline (then a new
child takes its place when next needed).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from agenttasks.workers.fetch_extract import Download

STARTUP_SECONDS = 60.0  # a fresh child imports trafilatura (~0.5 s) before its first page
_READY = "ready"


class ExtractionError(Exception):
    """Extraction gave no answer; `kind` is extraction_timeout or extraction_failed."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind, self.reason = kind, reason


class _Child:
    """One child process and its end of the pipe; it extracts one page at a time."""

    def __init__(self, process: BaseProcess, connection: Connection) -> None:
        self.process, self.connection = process, connection

    @classmethod
    def start(cls) -> _Child:
        # spawn, not fork: the worker has threads (the store's pool, NATS) a fork would copy
        # mid-flight.
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(
            target=_serve, args=(theirs,), name="agenttasks-extract", daemon=True
        )
        process.start()
        theirs.close()
        child = cls(process, ours)
        if not (ours.poll(STARTUP_SECONDS) and _received(ours) == _READY):
            child.kill()
            raise ExtractionError("extraction_failed", "the extraction process did not start")
        return child

    def exchange(self, download: Download) -> Any:
        self.connection.send(download)
        return self.connection.recv()

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.connection.close()


class ExtractionPool:
    """At most `processes` pages extract at once, each within `deadline` seconds."""

    def __init__(self, processes: int = 2, deadline: float = 10.0) -> None:
        self.deadline = deadline
        self._slots = asyncio.Semaphore(processes)
        self._idle: list[_Child] = []
        self.replaced = 0  # children killed at their deadline (for logs and tests)

    async def extract(self, download: Download) -> tuple[str, str]:
        """(title, text) of the page; ExtractionError when it overruns or its child fails."""
        async with self._slots:
            child = self._idle.pop() if self._idle else await _started()
            answer = asyncio.ensure_future(asyncio.to_thread(child.exchange, download))
            try:
                done, _ = await asyncio.wait({answer}, timeout=self.deadline)
            except BaseException:  # cancelled while the child works: it may never finish
                await _discard(child, answer)
                raise
            if not done:
                self.replaced += 1
                await _discard(child, answer)
                raise ExtractionError(
                    "extraction_timeout",
                    f"extracting its text took longer than {self.deadline:g} s",
                )
            try:
                status, value = answer.result()
            except (EOFError, OSError):  # the child died (out of memory, killed)
                await _discard(child, answer)
                raise ExtractionError(
                    "extraction_failed", "the extraction process ended without an answer"
                ) from None
            self._idle.append(child)
            if status != "ok":
                raise ExtractionError(
                    "extraction_failed", f"its text could not be extracted ({value})"
                )
            title, text = value
            return title, text

    async def aclose(self) -> None:
        """Stops every child."""
        idle, self._idle = self._idle, []
        for child in idle:
            await asyncio.to_thread(child.kill)


async def _started() -> _Child:
    starting = asyncio.ensure_future(asyncio.to_thread(_Child.start))
    try:
        return await asyncio.shield(starting)
    except asyncio.CancelledError:  # the child still starts: stop it once it has
        starting.add_done_callback(_kill_started)
        raise


def _kill_started(starting: asyncio.Future[_Child]) -> None:
    if not starting.cancelled() and starting.exception() is None:
        starting.result().kill()


async def _discard(child: _Child, answer: asyncio.Future[Any]) -> None:
    # Kill first: the thread blocked in recv() then sees end-of-file and returns, so the pipe
    # is closed only once nothing reads it.
    child.process.kill()
    await asyncio.wait({answer})
    with contextlib.suppress(BaseException):
        answer.result()
    await asyncio.to_thread(child.kill)


def _received(connection: Connection) -> Any:
    try:
        return connection.recv()
    except (EOFError, OSError):
        return None


def _serve(connection: Connection) -> None:
    """The child: extracts each page it is sent until the worker closes the pipe."""
    from agenttasks.workers.fetch_extract import extract, extraction_config

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the worker's to handle
    extraction_config()
    import trafilatura  # noqa: F401  (loaded before the first deadline starts)

    connection.send(_READY)
    while True:
        try:
            download = connection.recv()
        except (EOFError, OSError):
            return
        try:
            answer: tuple[str, Any] = ("ok", extract(download))
        except Exception as error:  # a page trafilatura cannot read: say so, keep serving
            answer = ("error", type(error).__name__)
        connection.send(answer)
