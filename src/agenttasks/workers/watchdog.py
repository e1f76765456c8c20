"""Ends attempts that nobody will end: past their timeout, or out of deliveries.

A worker enforces its own tasks' timeouts; this catches the ones whose worker vanished (the read
model still says running long after the deadline), and the ones whose message JetStream gave up
on after `max_deliver` tries (it announces that with an advisory). Several watchdogs may run at
once: the aggregate refuses the second fail of an attempt, so they never double up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from functools import partial
from uuid import UUID

from agenttasks.application.tasks import SYSTEM, TaskCommands, TaskNotFound
from agenttasks.bus.connection import Bus
from agenttasks.bus.event_data import TaskRetried, data_of
from agenttasks.bus.messages import STREAM, TaskEvent, decode
from agenttasks.domain.rules import RuleViolation
from agenttasks.outage import Outage
from agenttasks.projections.overdue_queries import OverdueAttempts

log = logging.getLogger(__name__)

ADVISORY = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{STREAM}.*"
GRACE_SECONDS = 5.0  # the worker's own timeout normally fires first


class Watchdog:
    """Fails overdue and undeliverable attempts; run one per worker process.

    The maintenance leader calls `fail_overdue` too (built without a bus: no advisories).
    """

    def __init__(
        self,
        commands: TaskCommands,
        bus: Bus | None,
        overdue: OverdueAttempts,
        executor: Executor,
        *,
        every: float = 2.0,
    ) -> None:
        self._commands = commands
        self._bus = bus
        self._overdue = overdue
        self._executor = executor
        self._every = every

    async def run(self, stop: asyncio.Event) -> None:
        if self._bus is None:
            raise ValueError("the watchdog runs with a bus; without one only fail_overdue works")
        subscription = await self._bus.subscribe(ADVISORY, self._on_advisory)
        outage = Outage("watchdog: the timeout sweep", log)  # a database outage is said once
        try:
            while not stop.is_set():
                try:
                    await self.fail_overdue()
                    outage.restored()
                except Exception as error:
                    outage.failed(error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._every)
        finally:
            await subscription.close()

    async def fail_overdue(self) -> int:
        """Fails every attempt running past its timeout (plus grace); returns how many."""
        failed = 0
        for late in await self._overdue.find(GRACE_SECONDS):
            if await self._settle(
                partial(self._timed_out, late.task_id, late.attempt, late.timeout_seconds)
            ):
                failed += 1
        return failed

    def _timed_out(self, task_id: UUID, attempt: int, timeout_seconds: int) -> object:
        message = (
            f"the task ran past its timeout of {timeout_seconds} s (its worker stopped responding)"
        )
        return self._commands.fail(task_id, attempt, "timeout", message)

    async def _on_advisory(self, data: bytes) -> None:
        try:
            advisory = json.loads(data)
            if not str(advisory.get("consumer", "")).startswith("worker-") or self._bus is None:
                return
            event = decode(await self._bus.stored(int(advisory["stream_seq"])))
        except Exception:
            log.exception("could not read a max-deliveries advisory")
            return
        if not isinstance(event, TaskEvent):
            return
        task_id = UUID(event.task_id)
        attempt = data_of(event, TaskRetried).attempt if event.type == "retried" else 1
        deliveries = advisory.get("deliveries")

        def fail() -> object:
            task = self._commands.get(SYSTEM, task_id)
            if task.attempt != attempt or task.status not in ("pending", "running"):
                return None
            return self._commands.fail(
                task_id,
                attempt,
                "delivery_exhausted",
                f"no worker could finish attempt {attempt}: its message was delivered "
                f"{deliveries} times without being settled",
            )

        if await self._settle(fail):
            log.warning("failed %s: its message ran out of deliveries", task_id)

    async def _settle(self, command: Callable[[], object]) -> bool:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, command) is not None
        except (RuleViolation, TaskNotFound):
            return False  # already settled
