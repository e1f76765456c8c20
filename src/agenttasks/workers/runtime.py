"""The worker: takes task attempts from JetStream, runs their agents, records what happens.

A message is the lease on an attempt. The worker holds it unacknowledged, with heartbeats
(`in_progress`), from the moment it takes it until the attempt has ended in the event store;
if the worker dies, JetStream redelivers the message after `ack_wait` to another worker, which
finds the attempt still "running" on a redelivered message and declares it lost (failed, and
retried as a new attempt). The aggregate refuses every event of a stale attempt, so a task
completes once however many workers touched it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections import Counter
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from agenttasks.application.append_lock import AppendLockTimeout
from agenttasks.application.loop_commit import LoopCommitter
from agenttasks.application.prices import PriceTable
from agenttasks.application.tasks import SYSTEM, TaskCommands, TaskNotFound
from agenttasks.application.user_slots import NoSlots, RunSlots
from agenttasks.bus.connection import Bus
from agenttasks.bus.consumers import PullConsumer
from agenttasks.bus.messages import TaskEvent, decode, task_subject
from agenttasks.domain.rules import TASK_TYPES, RuleViolation
from agenttasks.observability import tracing
from agenttasks.offload import Offload
from agenttasks.workers.agents import Agent
from agenttasks.workers.backlog import Backlog, Job
from agenttasks.workers.call_budget import CallBudget
from agenttasks.workers.consumers import bind_all
from agenttasks.workers.context import AgentContext, AttemptOver
from agenttasks.workers.errors import AgentError, as_agent_error
from agenttasks.workers.fetch import Fetcher
from agenttasks.workers.heartbeats import NoPresence, Presence, RunningAttempt
from agenttasks.workers.intake import NotAJob, job_from, task_from_created
from agenttasks.workers.limits import Limits
from agenttasks.workers.llm import LanguageModel
from agenttasks.workers.loop_start import LoopStarts
from agenttasks.workers.retry_policy import Backoff

log = logging.getLogger(__name__)
# A job whose user has every slot across the workers taken waits this long before asking again.
SLOT_WAIT_SECONDS = 1.0


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker process runs; see `agenttasks worker --help`."""

    types: tuple[str, ...] = TASK_TYPES
    concurrency: int = 8
    prefetch: int = 1000  # messages held ahead of starting: the window of fairness
    per_user_limit: int | None = None  # running tasks per user in this process
    ack_wait: float = 30.0  # seconds without a heartbeat before a message is redelivered
    max_deliver: int = 5
    backoff: Backoff = field(default_factory=Backoff)
    worker_id: str = field(default_factory=new_worker_id)


@dataclass
class _Running:
    job: Job
    task: asyncio.Task[None]
    stopping_because: str | None = None  # "cancelled" or "shutdown" when we stop it
    since: datetime = field(default_factory=lambda: datetime.now(UTC))  # for the Workers view


class Worker:
    """One worker process's pool of concurrent attempts."""

    def __init__(
        self,
        commands: TaskCommands,
        bus: Bus,
        agents: dict[str, Agent],
        *,
        llm: LanguageModel | None,
        fetcher: Fetcher,
        options: WorkerOptions,
        executor: Executor,
        limits: Limits,
        slots: RunSlots | None = None,
        presence: Presence | None = None,
        prices: PriceTable | None = None,
        budget: CallBudget | None = None,
        starts: LoopStarts | None = None,
        writes: LoopCommitter | None = None,
    ) -> None:
        self.options = options
        # Attempt 1 started on the event loop (loop_start.py); None: on a store thread.
        self._starts = starts
        # The attempts' reports saved on the event loop (context.py); None: on store threads.
        self._writes = writes
        # This process's row in the Workers view (workers/heartbeats.py).
        self._presence: Presence = presence if presence is not None else NoPresence()
        # Running tasks per user across every worker (application/user_slots.py).
        self._slots: RunSlots = slots if slots is not None else NoSlots()
        self._commands = commands
        self._bus = bus
        self._agents = agents
        self._llm = llm
        self._fetcher = fetcher
        self._limits = limits
        # Every model call is priced and offered to the budget first (docs/cost.md).
        self._prices = prices
        self._budget = budget
        # Store commands go to threads; their outcomes come back in batches (offload.py).
        self._offload = executor if isinstance(executor, Offload) else Offload(executor)
        self._backlog = Backlog(self.options.per_user_limit)
        self._running: dict[tuple[UUID, int], _Running] = {}
        self._by_user: Counter[str] = Counter()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._stopping = False
        self.started = 0  # counters for logs and tests
        self.finished = 0

    @property
    def worker_id(self) -> str:
        return self.options.worker_id

    async def run(self, stop: asyncio.Event) -> None:
        """Works until `stop` is set, then hands back what it holds and returns."""
        options = self.options
        consumers = await bind_all(
            self._bus,
            options.types,
            ack_wait=options.ack_wait,
            max_deliver=options.max_deliver,
            max_ack_pending=max(options.prefetch, options.concurrency) * 4,
        )
        cancellations = await self._bus.subscribe(
            task_subject(kind="cancelled"), self._on_cancelled
        )
        loops = [asyncio.create_task(self._fetch_loop(c, len(consumers))) for _, c in consumers]
        loops += [
            asyncio.create_task(self._schedule_loop()),
            asyncio.create_task(self._heartbeats()),
            asyncio.create_task(self._presence.run(self.running_attempts)),
        ]
        log.info(
            "worker %s: %s, concurrency %d",
            self.worker_id,
            ",".join(options.types),
            options.concurrency,
        )
        try:
            await stop.wait()
        finally:
            self._stopping = True
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self._hand_back()
            await self._presence.stopped()
            await cancellations.close()
            for _, consumer in consumers:
                with contextlib.suppress(Exception):
                    await consumer.close()

    def running_attempts(self) -> list[RunningAttempt]:
        """The attempts this worker runs now (ids and start times only)."""
        return [
            RunningAttempt(task_id, attempt, running.since)
            for (task_id, attempt), running in self._running.items()
        ]

    # Taking messages.

    async def _fetch_loop(self, consumer: PullConsumer, sharing: int) -> None:
        while True:
            room = self.options.prefetch - len(self._backlog)
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            batch = max(1, min(256, room // sharing))
            try:
                deliveries = await consumer.fetch(batch, wait=5.0)
            except asyncio.CancelledError:
                raise
            except Exception:  # the connection is reconnecting: try again shortly
                log.warning("fetch failed; retrying", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            now = time.time()
            for delivery in deliveries:
                try:
                    job = job_from(delivery)
                except NotAJob as error:
                    log.error("dropping a message: %s", error)
                    await delivery.ack()
                    continue
                if (replaced := self._backlog.add(job, now)) is not None:
                    await replaced.delivery.ack()  # an older offer of the same task
            if deliveries:
                # The scheduling loop starts them, one turn of the event loop later: by then the
                # other consumers' fetches of this moment are in the backlog too, so the most
                # urgent is started first (starting here let a low-priority job that came first
                # take the last slot: tests/integration/test_worker_runtime.py, in CI).
                self._wake.set()

    # Starting jobs, most urgent first, fairly between users.

    def _schedule_pass(self) -> None:
        while len(self._running) < self.options.concurrency:
            job = self._backlog.take(self._by_user, time.time())
            if job is None:
                break
            self._room.set()
            self._launch(job)

    async def _schedule_loop(self) -> None:
        while True:
            self._schedule_pass()
            self._wake.clear()
            ready_at = self._backlog.next_ready_at()
            timeout = None if ready_at is None else max(0.0, ready_at - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _launch(self, job: Job) -> None:
        key = (job.task_id, job.attempt)
        if key in self._running:  # a redelivery of what runs here already: keep the lease
            asyncio.get_running_loop().create_task(job.delivery.ack())
            return
        self._by_user[job.user] += 1
        task = asyncio.create_task(self._attempt(job))
        self._running[key] = _Running(job, task)

        def finished(_: asyncio.Task[None]) -> None:
            del self._running[key]
            self._by_user[job.user] -= 1
            if not self._by_user[job.user]:
                del self._by_user[job.user]
            self.finished += 1
            self._wake.set()

        task.add_done_callback(finished)

    # Running one attempt.

    async def _attempt(self, job: Job) -> None:
        # The attempt continues the trace its message carries (the command that queued the
        # task): its log lines and the events it stores name that trace (docs/operations.md).
        attributes = {"task.type": job.task_type, "agenttasks.attempt": job.attempt}
        with tracing.span(
            "worker attempt", job.delivery.traceparent, task=job.task_id, attributes=attributes
        ):
            await self._attempt_traced(job)

    async def _attempt_traced(self, job: Job) -> None:
        try:
            taken = await self._slots.take(job.user, job.task_id, job.attempt, self.worker_id)
        except Exception:
            log.warning("could not take a slot for %s; trying again", job.task_id, exc_info=True)
            taken = False
        if not taken:
            # Held here (its message kept by heartbeats), asked again after a while.
            job.ready_at = time.time() + SLOT_WAIT_SECONDS
            self._backlog.add(job, time.time())
            return
        try:
            await self._attempt_in_slot(job)
        finally:
            with contextlib.suppress(Exception):
                await self._slots.release(job.task_id, job.attempt)

    async def _attempt_in_slot(self, job: Job) -> None:
        # Attempt 1 starts from the task its created message carries: no read and decode of
        # its events first (~15% of the worker's Python time per task; docs/performance.md).
        offered = task_from_created(job) if job.attempt == 1 else None
        try:
            started = None
            if offered is not None and self._starts is not None:
                started = await self._starts.start(offered, job.position, self.worker_id)
            elif offered is not None:
                started = await self._call(
                    self._commands.start_offered, offered, job.position, self.worker_id
                )
            if started is None:  # no copy, or the copy was not the task's state: load it
                started = await self._call(
                    self._commands.start, job.task_id, job.attempt, self.worker_id
                )
        except TaskNotFound:
            await job.delivery.ack()
            return
        except RuleViolation:
            await self._not_startable(job)
            return
        except AppendLockTimeout as error:  # nothing was stored: the start is simply offered again
            log.warning("could not start %s: %s; it will be offered again", job.task_id, error)
            await job.delivery.nak(delay=float(error.retry_after))
            return
        except Exception:
            log.exception("could not start %s; it will be offered again", job.task_id)
            await job.delivery.nak(delay=1.0)
            return
        self.started += 1
        task = started.task
        assert task is not None
        log.info("attempt %d of %s task started", job.attempt, job.task_type)
        ctx = AgentContext(
            task,
            self._commands,
            self._offload,
            llm=self._llm,
            fetcher=self._fetcher,
            limits=self._limits,
            prices=self._prices,
            budget=self._budget,
            committer=self._writes,
        )
        handed_back: AppendLockTimeout | None = None
        try:
            await self._run_agent(job, ctx, task.timeout_seconds, task.started_at)
        except AppendLockTimeout as error:
            # Its outcome could not be stored (the events table stayed locked through every try):
            # the attempt still runs in the store, and its message, handed back, is delivered
            # again later; that delivery takes the attempt over (`_not_startable`) and retries it.
            handed_back = error
            log.warning(
                "attempt %d of %s: %s; its message is handed back", job.attempt, job.task_id, error
            )
        finally:
            await ctx.close()
            with contextlib.suppress(Exception):
                if handed_back is None:
                    await job.delivery.ack()
                else:
                    await job.delivery.nak(delay=float(handed_back.retry_after))

    async def _run_agent(
        self, job: Job, ctx: AgentContext, timeout_seconds: int, started_at: datetime | None
    ) -> None:
        elapsed = (datetime.now(UTC) - started_at).total_seconds() if started_at else 0.0
        deadline = asyncio.timeout(max(0.0, timeout_seconds - elapsed))
        try:
            async with deadline:
                result = await self._agents[job.task_type](ctx)
            await ctx.complete(result)
            log.info("attempt %d of %s task completed", job.attempt, job.task_type)
        except AttemptOver as over:
            log.info("attempt %s/%d ended elsewhere: %s", job.task_id, job.attempt, over)
        except AppendLockTimeout:
            raise  # not the agent's failure: nothing of its outcome was stored (the caller)
        except asyncio.CancelledError:
            running = self._running.get((job.task_id, job.attempt))
            if running is not None and running.stopping_because == "shutdown":
                await self._fail(
                    job,
                    ctx,
                    AgentError(
                        "interrupted",
                        "the worker was stopped; the task will run again",
                        transient=True,
                    ),
                    immediately=True,
                )
            elif running is None or running.stopping_because is None:
                raise  # not ours to swallow
        except TimeoutError:
            if not deadline.expired():
                await self._fail(job, ctx, as_agent_error(TimeoutError("an operation timed out")))
            else:
                await self._fail(
                    job,
                    ctx,
                    AgentError("timeout", f"the task ran past its timeout of {timeout_seconds} s"),
                )
        except Exception as error:
            if not isinstance(error, AgentError):
                log.exception("agent %s failed on %s", job.task_type, job.task_id)
            await self._fail(job, ctx, as_agent_error(error))

    async def _fail(
        self, job: Job, ctx: AgentContext, error: AgentError, immediately: bool = False
    ) -> None:
        retry_in = None
        if error.transient:
            retry_in = (
                (lambda _: 0.0)
                if immediately
                else self.options.backoff.for_error(error.retry_after)
            )
        await ctx.close()
        with contextlib.suppress(RuleViolation, TaskNotFound):
            await self._call(
                self._commands.fail,
                job.task_id,
                job.attempt,
                error.kind,
                error.message,
                retry_in=retry_in,
            )

    async def _not_startable(self, job: Job) -> None:
        """The attempt could not start; if it runs on a redelivered message, its worker is gone."""
        try:
            task = await self._call(self._commands.get, SYSTEM, job.task_id)
            lost = (
                task.status == "running"
                and task.attempt == job.attempt
                and job.delivery.delivered > 1
            )
            if lost:
                log.warning(
                    "taking over %s: worker %s stopped responding", job.task_id, task.worker_id
                )
                await self._call(
                    self._commands.fail,
                    job.task_id,
                    job.attempt,
                    "worker_lost",
                    f"worker {task.worker_id} stopped responding during attempt {job.attempt}",
                    retry_in=lambda _: 0.0,
                )
        except (RuleViolation, TaskNotFound):
            pass  # someone else settled it first
        except AppendLockTimeout as error:
            log.warning("could not take over %s: %s; it will be offered again", job.task_id, error)
            await job.delivery.nak(delay=float(error.retry_after))
            return
        except Exception:
            log.exception("could not check %s; it will be offered again", job.task_id)
            await job.delivery.nak(delay=1.0)
            return
        await job.delivery.ack()

    # Cancellation, heartbeats, shutdown.

    async def _on_cancelled(self, data: bytes) -> None:
        try:
            event = decode(data)
        except Exception:
            return
        if not isinstance(event, TaskEvent):
            return
        task_id = UUID(event.task_id)
        if (queued := self._backlog.remove(task_id)) is not None:
            await queued.delivery.ack()
        for (running_id, _), running in list(self._running.items()):
            if running_id == task_id:
                running.stopping_because = "cancelled"
                running.task.cancel()

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.options.ack_wait / 3)
            with contextlib.suppress(Exception):
                await self._slots.renew(self.worker_id)
            held = [*self._backlog.jobs(), *(r.job for r in self._running.values())]
            for job in held:
                with contextlib.suppress(Exception):
                    await job.delivery.in_progress()

    async def _hand_back(self) -> None:
        for job in self._backlog.jobs():
            with contextlib.suppress(Exception):
                await job.delivery.nak()
        for running in self._running.values():
            running.stopping_because = "shutdown"
            running.task.cancel()
        await asyncio.gather(
            *(r.task for r in list(self._running.values())), return_exceptions=True
        )

    async def _call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        # With the attempt's context variables: the command sees its trace and task id.
        return await self._offload.call(function, *args, **kwargs)
