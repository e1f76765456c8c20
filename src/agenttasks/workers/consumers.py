"""The worker's JetStream consumers: one durable per (task type, priority), shared by all."""

from __future__ import annotations

import asyncio
import logging

from agenttasks.bus.connection import Bus
from agenttasks.bus.consumers import BusUnavailable, PullConsumer, StreamMissing
from agenttasks.bus.messages import task_subject
from agenttasks.workers.backlog import PRIORITY_ORDER

log = logging.getLogger(__name__)


def consumer_name(task_type: str, priority: str) -> str:
    return f"worker-{task_type}-{priority}"


async def bind_all(
    bus: Bus,
    types: tuple[str, ...],
    *,
    ack_wait: float,
    max_deliver: int,
    max_ack_pending: int,
) -> list[tuple[str, PullConsumer]]:
    """Binds (creating or updating) every consumer, most urgent first; waits for the stream."""
    bound: list[tuple[str, PullConsumer]] = []
    for priority in PRIORITY_ORDER:
        for task_type in types:
            subjects = [
                task_subject(task_type=task_type, priority=priority, kind=kind)
                for kind in ("created", "retried")
            ]
            while True:
                try:
                    consumer = await bus.pull_consumer(
                        consumer_name(task_type, priority),
                        subjects=subjects,
                        ack_wait=ack_wait,
                        max_deliver=max_deliver,
                        max_ack_pending=max_ack_pending,
                        # A started task's latency: take a message the moment it arrives.
                        lingering=True,
                    )
                    break
                except StreamMissing:
                    log.info("waiting for the relay to create the event stream")
                    await asyncio.sleep(1.0)
                except BusUnavailable as error:
                    # A worker that exited here left its tasks to the others (found by the
                    # cluster chaos test, while a new cluster elected the consumers' leaders).
                    log.warning("%s; retrying", error)
                    await asyncio.sleep(1.0)
            bound.append((priority, consumer))
    return bound
