"""Holding back a stream's message that finishes a task until the task queries show it.

The hub hears of an event from NATS at about the moment the projector does, so a client
reading the task right after `completed` could get the state before it (issue 14). A stream
passes each finishing update through its gate, which waits, bounded, until the tasks read
model includes the update's position. Other updates pass at once: a client that wants a query
to reflect them passes their position as `min_position`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from agenttasks.bus.messages import TaskEvent
from agenttasks.domain.rules import FINISHED

log = logging.getLogger(__name__)

# (read model, position, timeout) -> whether the read model includes the position in time
Wait = Callable[[str, int, float], Awaitable[bool]]


class FinalMessageGate:
    """One stream's gate: a finishing update waits until `read_model` includes it."""

    def __init__(self, wait: Wait, timeout: float, read_model: str = "tasks") -> None:
        self._wait = wait
        self._timeout = timeout
        self._read_model = read_model
        self._behind = False

    async def hold(self, event: TaskEvent) -> bool:
        """Returns once `event` is in the read model (at once unless it finishes its task).

        False when the read model did not get there in time: the update goes out anyway.
        """
        if event.status not in FINISHED:
            return True
        # Once the read model was late, later finishing updates only check: a stopped
        # projector costs a stream one wait, not one per task it reports.
        timeout = 0.0 if self._behind else self._timeout
        reached = await self._wait(self._read_model, event.position, timeout)
        if not reached and not self._behind:
            log.warning(
                "%s read model behind position %s; a stream sends its final update anyway",
                self._read_model,
                event.position,
            )
        self._behind = not reached
        return reached
