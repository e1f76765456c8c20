"""A role's idle wait ends as soon as it is asked to stop (stoppable.py)."""

from __future__ import annotations

import asyncio

import pytest

from agenttasks.stoppable import Stopped, unless_stopped


async def test_a_stop_cancels_the_wait_and_says_so() -> None:
    stop = asyncio.Event()
    began = asyncio.Event()
    cancelled = asyncio.Event()

    async def long_wait() -> int:
        began.set()
        try:
            await asyncio.Event().wait()  # never set: only a cancel ends it
        finally:
            cancelled.set()
        return 1

    waiting = asyncio.ensure_future(unless_stopped(stop, long_wait()))
    # A wait cancelled before it begins would never reach its `finally`: stop once it runs.
    await asyncio.wait_for(began.wait(), 5)
    stop.set()
    with pytest.raises(Stopped):
        await waiting
    assert cancelled.is_set()


async def test_a_wait_that_ends_first_gives_its_result_or_its_error() -> None:
    stop = asyncio.Event()

    async def answer() -> int:
        return 42

    async def fails() -> int:
        raise ConnectionError("gone")

    assert await unless_stopped(stop, answer()) == 42
    with pytest.raises(ConnectionError):
        await unless_stopped(stop, fails())
