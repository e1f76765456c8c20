"""The hop to the store's threads (offload.py): outcomes, context, cancellation, one wake-up a
burst, the thread limit, shutdown."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from agenttasks.offload import Offload, StoreThreads

ATTEMPT: contextvars.ContextVar[str] = contextvars.ContextVar("attempt", default="none")


class CountingThreads(StoreThreads):
    """Counts the loop's wake-ups that hand outcomes over."""

    drains = 0

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        self.drains += 1
        super()._drain(loop)


def fails() -> None:
    raise ValueError("refused")


def stops() -> None:
    raise StopIteration


@pytest.mark.parametrize("make", [lambda: StoreThreads(4), lambda: Offload(ThreadPoolExecutor(4))])
async def test_each_caller_gets_its_own_outcome_and_context(make: object) -> None:
    offload = make()  # type: ignore[operator]

    async def one(i: int) -> tuple[int, str]:
        ATTEMPT.set(f"attempt-{i}")
        return await offload.call(lambda: (i * i, ATTEMPT.get()))  # type: ignore[no-any-return]

    results = await asyncio.gather(*(one(i) for i in range(50)))
    assert results == [(i * i, f"attempt-{i}") for i in range(50)]
    with pytest.raises(ValueError, match="refused"):
        await offload.call(fails)
    with pytest.raises(RuntimeError, match="StopIteration"):  # not a caller left hanging
        await offload.call(stops)


async def test_a_burst_of_finished_calls_wakes_the_loop_once() -> None:
    threads = CountingThreads(4)
    calls = [asyncio.ensure_future(threads.call(lambda i=i: i)) for i in range(20)]
    await asyncio.sleep(0)  # every call queued
    threads.shutdown(wait=True)  # blocks the loop until all 20 have finished on the threads
    assert await asyncio.gather(*calls) == list(range(20))
    assert threads.drains == 1


async def test_a_call_cancelled_before_it_began_never_runs() -> None:
    threads = StoreThreads(1)
    release, ran = threading.Event(), []
    first = asyncio.ensure_future(threads.call(release.wait))
    second = asyncio.ensure_future(threads.call(lambda: ran.append("second")))
    await asyncio.sleep(0)  # both queued; the one thread holds the first
    second.cancel()
    release.set()
    assert await first is True
    threads.shutdown(wait=True)  # the thread has taken every queued call by now
    assert ran == []
    assert second.cancelled()


async def test_it_serves_run_in_executor_too() -> None:
    threads = StoreThreads(2)
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(threads, sum, [1, 2, 3]) == 6
    threads.shutdown(wait=True)
    with pytest.raises(RuntimeError, match="shut down"):
        threads.submit(sum, [1])


async def test_no_more_threads_than_the_limit_and_every_call_runs() -> None:
    offload = StoreThreads(3)
    names: set[str] = set()
    running = 0
    most = 0
    lock = threading.Lock()
    release = threading.Event()

    def call(i: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            names.add(threading.current_thread().name)
        release.wait(10)
        with lock:
            running -= 1
        return i

    try:
        calls = asyncio.gather(*(offload.call(call, i) for i in range(10)))
        release.set()
        assert await calls == list(range(10))
        assert most <= 3
        assert len(names) <= 3
    finally:
        offload.shutdown(wait=True)


async def test_after_shutdown_a_call_is_refused() -> None:
    offload = StoreThreads(1)
    assert await offload.call(lambda: 1) == 1
    offload.shutdown(wait=True)
    with pytest.raises(RuntimeError, match="shut down"):
        await offload.call(lambda: 2)
