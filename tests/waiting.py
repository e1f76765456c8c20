"""Waiting for a condition with a deadline: the only honest way for a test to wait.

A test never sleeps to let something happen: it names the positive signal that shows it has
happened (a row, a counter, a message, an HTTP answer) and waits for that here. A condition may
be a plain function or a coroutine function (an HTTP call, a NATS request).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def _value(produce: Callable[[], T | Awaitable[T]]) -> T:
    value = produce()
    if inspect.isawaitable(value):
        return await value
    return value


def _explained(within: float, explain: Callable[[], object] | None) -> str:
    message = f"condition not met within {within}s"
    return message if explain is None else f"{message}: {explain()}"


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]],
    within: float = 20.0,
    *,
    every: float = 0.005,
    explain: Callable[[], object] | None = None,
) -> None:
    """Polls `condition` until it holds; fails the test after `within` seconds (with `explain()`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await _value(condition):
        assert loop.time() < deadline, _explained(within, explain)
        await asyncio.sleep(every)


async def wait_for_value(
    produce: Callable[[], T | Awaitable[T]],
    satisfied: Callable[[T], bool],
    within: float = 20.0,
    *,
    every: float = 0.005,
) -> T:
    """Polls `produce` until its value is `satisfied`, and returns that value; fails with the last."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not satisfied(value := await _value(produce)):
        assert loop.time() < deadline, f"not satisfied within {within}s; last value: {value!r}"
        await asyncio.sleep(every)
    return value


def block_until(
    condition: Callable[[], bool],
    within: float = 20.0,
    *,
    every: float = 0.002,
    explain: Callable[[], object] | None = None,
) -> None:
    """`wait_until` for threads and synchronous tests: polls, and fails after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, _explained(within, explain)
        time.sleep(every)


def block_for_value(
    produce: Callable[[], T],
    satisfied: Callable[[T], bool],
    within: float = 20.0,
    *,
    every: float = 0.002,
) -> T:
    """`wait_for_value` for synchronous tests (an HTTP answer that must come to say something)."""
    deadline = time.monotonic() + within
    while not satisfied(value := produce()):
        assert time.monotonic() < deadline, f"not satisfied within {within}s; last value: {value!r}"
        time.sleep(every)
    return value
