"""The worker's local queue: task messages taken from JetStream, not yet started.

JetStream hands out messages first in, first out per consumer, and there is one consumer per
(type, priority), so priority is honoured by asking the urgent consumers first. Fairness between
users needs more: a worker takes up to `prefetch` messages ahead (holding them with heartbeats,
so they are not redelivered) and starts, within the highest priority that has work, the job of
the user with the fewest tasks running here, then the one served least recently (round robin),
oldest first. One user's thousand queued tasks
then cannot starve another user's one, as long as the other's task is within the window.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from uuid import UUID

from agenttasks.bus.consumers import Delivery
from agenttasks.bus.messages import TaskEvent
from agenttasks.domain.rules import PRIORITIES

PRIORITY_ORDER = tuple(reversed(PRIORITIES))  # most urgent first


@dataclass
class Job:
    """One attempt of one task that a message offers, and the message to settle afterwards."""

    task_id: UUID
    attempt: int
    task_type: str
    priority: str
    user: str
    position: int
    delivery: Delivery
    ready_at: float = 0.0  # time.time() before which it must not start (retry backoff)
    # A created message's payload, decoded once: attempt 1 starts from it (intake.py).
    created: TaskEvent | None = field(default=None, compare=False, repr=False)
    dropped: bool = field(default=False, compare=False)


class Backlog:
    """Jobs waiting for a free slot, handed out by priority, then fairness, then age."""

    def __init__(self, per_user_limit: int | None = None) -> None:
        self._per_user_limit = per_user_limit
        # priority -> user -> heap of (position, job): each user's jobs oldest first
        self._ready: dict[str, dict[str, list[tuple[int, int, Job]]]] = {
            p: {} for p in PRIORITY_ORDER
        }
        self._delayed: list[tuple[float, int, Job]] = []
        self._tie = itertools.count()
        self._by_task: dict[UUID, Job] = {}
        self._served = itertools.count(1)
        self._last_served: dict[str, int] = {}  # user -> when they last had a job started

    def __len__(self) -> int:
        return len(self._by_task)

    def __contains__(self, task_id: UUID) -> bool:
        return task_id in self._by_task

    def add(self, job: Job, now: float) -> Job | None:
        """Queues `job` unless a newer offer of its task is held; returns the offer set aside.

        Two messages may offer one task (its `created`, and the `retried` of a later attempt
        waiting out its backoff), and a redelivery can bring the older one back after the newer:
        the higher attempt is kept, and the caller settles whichever job comes back.
        """
        held = self._by_task.get(job.task_id)
        if held is not None and (held.attempt, held.position) > (job.attempt, job.position):
            job.dropped = True
            return job
        replaced = self._by_task.pop(job.task_id, None)
        if replaced is not None:
            replaced.dropped = True
        self._by_task[job.task_id] = job
        if job.ready_at > now:
            heapq.heappush(self._delayed, (job.ready_at, next(self._tie), job))
        else:
            self._queue(job)
        return replaced

    def remove(self, task_id: UUID) -> Job | None:
        """Takes the task's job out (it was cancelled); it is skipped where it still sits."""
        job = self._by_task.pop(task_id, None)
        if job is not None:
            job.dropped = True
        return job

    def take(self, running_by_user: Mapping[str, int], now: float) -> Job | None:
        """The job to start next, or None when nothing may start now."""
        self._release_due(now)
        for priority in PRIORITY_ORDER:
            queues = self._ready[priority]
            best: tuple[int, int, int, str] | None = None
            for user, queue in list(queues.items()):
                while queue and queue[0][2].dropped:
                    heapq.heappop(queue)
                if not queue:
                    del queues[user]
                    continue
                running = running_by_user.get(user, 0)
                if self._per_user_limit is not None and running >= self._per_user_limit:
                    continue
                served = self._last_served.get(user, 0)
                candidate = (running, served, queue[0][0], user)
                if best is None or candidate < best:
                    best = candidate
            if best is not None:
                job = heapq.heappop(queues[best[3]])[2]
                del self._by_task[job.task_id]
                self._last_served[job.user] = next(self._served)
                if len(self._last_served) > 100_000:  # forget the least recent half
                    keep = sorted(self._last_served.items(), key=lambda kv: kv[1])[50_000:]
                    self._last_served = dict(keep)
                return job
        return None

    def next_ready_at(self) -> float | None:
        """When the earliest delayed job becomes ready."""
        while self._delayed and self._delayed[0][2].dropped:
            heapq.heappop(self._delayed)
        return self._delayed[0][0] if self._delayed else None

    def jobs(self) -> Iterator[Job]:
        """Every job held (for heartbeats)."""
        return iter(list(self._by_task.values()))

    def _release_due(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            _, _, job = heapq.heappop(self._delayed)
            if not job.dropped:
                self._queue(job)

    def _queue(self, job: Job) -> None:
        queue = self._ready[job.priority].setdefault(job.user, [])
        heapq.heappush(queue, (job.position, next(self._tie), job))
