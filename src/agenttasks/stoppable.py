"""Waiting on something that may take a while, unless the process is asked to stop first.

A role's idle waits (the projector's second-long fetch; the relay has a watcher of its own per
leadership, relay.py) would otherwise hold up its exit by up to that second: `agenttasks up`
stops every role before its servers, so that second is on the way to the prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class Stopped(Exception):
    """`stop` was set before the wait ended; the wait was cancelled."""


async def unless_stopped(stop: asyncio.Event, wait: Coroutine[Any, Any, T]) -> T:
    """The result of `wait`; raises Stopped (cancelling it) if `stop` is set first."""
    waiting = asyncio.ensure_future(wait)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not waiting.done():
        waiting.cancel()
        # What it raises on its way out no longer matters: the caller is stopping.
        with contextlib.suppress(BaseException):
            await waiting
        raise Stopped
    return waiting.result()
