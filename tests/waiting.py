"""Waiting for a condition with a deadline: the only honest way for a test to wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def wait_until(condition: Callable[[], bool], within: float = 20.0) -> None:
    """Polls `condition` until it holds; fails the test after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, f"condition not met within {within}s"
        await asyncio.sleep(0.005)


def block_until(condition: Callable[[], bool], within: float = 20.0) -> None:
    """`wait_until` for threads and synchronous tests: polls, and fails after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"condition not met within {within}s"
        time.sleep(0.002)
