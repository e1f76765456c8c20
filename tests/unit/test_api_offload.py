"""The API's command threads (api/offload.py): answers, errors, context, the thread limit."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from agenttasks.api.offload import Offload

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


async def test_a_call_returns_its_result_from_another_thread() -> None:
    offload = Offload(2)
    try:
        name = await offload.run(lambda: threading.current_thread().name)
        assert name.startswith("command_")
        assert name != threading.current_thread().name
        assert await offload.run(lambda a, b: a + b, 2, 3) == 5
    finally:
        offload.shutdown(wait=True)


async def test_an_error_reaches_the_caller_as_itself() -> None:
    offload = Offload(1)

    def fail() -> None:
        raise LookupError("no such task")

    try:
        with pytest.raises(LookupError, match="no such task"):
            await offload.run(fail)
        with pytest.raises(RuntimeError, match="StopIteration"):
            await offload.run(lambda: next(iter(())))
        assert await offload.run(lambda: "still serving") == "still serving"
    finally:
        offload.shutdown(wait=True)


async def test_the_callers_context_variables_go_along() -> None:
    offload = Offload(4)
    try:

        async def one(value: str) -> str:
            request_id.set(value)
            return await offload.run(request_id.get)

        answers = await asyncio.gather(*(one(f"r{i}") for i in range(20)))
        assert answers == [f"r{i}" for i in range(20)]
    finally:
        offload.shutdown(wait=True)


async def test_no_more_threads_than_the_limit_and_every_call_runs() -> None:
    offload = Offload(3)
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
        calls = asyncio.gather(*(offload.run(call, i) for i in range(10)))
        release.set()
        assert await calls == list(range(10))
        assert most <= 3
        assert len(names) <= 3
    finally:
        offload.shutdown(wait=True)


async def test_after_shutdown_a_call_is_refused() -> None:
    offload = Offload(1)
    assert await offload.run(lambda: 1) == 1
    offload.shutdown(wait=True)
    with pytest.raises(RuntimeError, match="shut down"):
        await offload.run(lambda: 2)
