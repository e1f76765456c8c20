"""What an agent sees of the world while it runs one attempt of one task.

Agents report through this object and never touch the event store: every report becomes an event
of the attempt, written in order (one lock per attempt), with the partial text batched so a
streaming model produces a few events a second rather than one per token. Progress (and the text
left when a stream ends) is held for the attempt's next write, so reports that happen together
are one append (an offline summary's Progressed, ModelCalled and Completed: one, not three).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from decimal import Decimal
from typing import Any

import msgspec
import psycopg
from eventsourcing.persistence import IntegrityError

from agenttasks.application.append_lock import AppendLockTimeout
from agenttasks.application.loop_commit import LoopCommitter
from agenttasks.application.loop_session import session_lost
from agenttasks.application.prices import PriceTable, format_usd
from agenttasks.application.tasks import TaskCommands, Written
from agenttasks.application.transcoding import UnstorableValue
from agenttasks.domain.rules import RuleViolation
from agenttasks.domain.task import Task, command_trace
from agenttasks.observability import context
from agenttasks.offload import Offload
from agenttasks.workers.call_budget import CallBudget, NoBudget, RecordedCall
from agenttasks.workers.errors import AgentError
from agenttasks.workers.fetch import Fetcher
from agenttasks.workers.limits import Limits
from agenttasks.workers.llm import LanguageModel, Usage

log = logging.getLogger(__name__)

# Seconds between the tries of a report whose append timed out on the events table's lock
# (AGENTTASKS_APPEND_LOCK_TIMEOUT each): an operator's lock of a few seconds costs the attempt
# nothing; one that outlasts them all sends the attempt's message back for a later delivery.
LOCK_RETRY_DELAYS = (0.05, 0.25, 1.0, 2.0, 5.0)

PARTIAL_EVERY = 0.25  # seconds between partial-result events while text streams
# A held report (progress) is saved with the next write, or after this long if none comes.
HOLD_AT_MOST = PARTIAL_EVERY

Step = Callable[[Task], None]  # one aggregate method of this attempt (TaskCommands.report_many)

# A result is one event: it travels through one Postgres insert, one NATS message (max_payload
# 4 MB) and every projector. Inserts of a megabyte or more were measured to stall psycopg's
# pipeline mode (which the event store uses) on these machines, so results stay well below.
MAX_RESULT_BYTES = 256 * 1024


OFFLINE_CALL = RecordedCall(
    model="offline",
    provider="offline",
    prompt_tokens=0,
    completion_tokens=0,
    cached_tokens=0,
    usage="reported",
    latency_ms=0,
    cost_usd=Decimal(0),
    price_source="offline engine",
    price_version=None,
)


class AttemptOver(Exception):
    """The task moved on without this attempt (cancelled, or taken over): stop quietly."""


class AgentContext:
    """One running attempt: its task, its tools, and the reports it may make."""

    def __init__(
        self,
        task: Task,
        commands: TaskCommands,
        executor: Executor | Offload,
        *,
        llm: LanguageModel | None,
        fetcher: Fetcher,
        limits: Limits,
        prices: PriceTable | None = None,
        budget: CallBudget | None = None,
        partial_every: float = PARTIAL_EVERY,
        hold_at_most: float = HOLD_AT_MOST,
        committer: LoopCommitter | None = None,
    ) -> None:
        self.task_id = task.id
        self.attempt = task.attempt
        self.task_type = task.task_type
        self.priority = task.priority
        self.user = task.created_by
        self.config: dict[str, Any] = task.task_config
        self.llm = llm
        self.fetcher = fetcher
        self.limits = limits
        self.template_id = task.template_id
        self.prices = prices if prices is not None else PriceTable(None, bundled=False)
        self.budget: CallBudget = budget if budget is not None else NoBudget()
        # What the task's model calls used before and during this attempt (Task.ModelCalled).
        self.model_calls = 0  # of this attempt: the next call's step is model_calls + 1
        self.spent_usd = task.spent_usd
        self.model_tokens = task.model_tokens
        self.unpriced_calls = task.unpriced_calls
        self.offline_result = False  # set when the offline engine produced the result
        self._known: Task | None = task
        self._commands = commands
        # The worker's Offload (its hop to the store), or one of our own over a bare executor.
        self._offload = executor if isinstance(executor, Offload) else Offload(executor)
        # The worker's group commit on its event loop: reports from the copy we hold are saved
        # there, with no hop to a store thread (the threads' hand-offs cost more than the save).
        self._committer = committer
        self._lock = asyncio.Lock()
        self._progress = 0
        self._partial: list[str] = []
        self._partial_offset = 0
        self._partial_every = partial_every
        self._flusher: asyncio.Task[None] | None = None
        # Reports saved with the next write (one append for what happens together).
        self._held: list[Step] = []
        self._hold_at_most = hold_at_most
        # A timer, not a sleeping task, until the held reports are due: most attempts write
        # before it fires (their completion takes what is held), and a timer is a third of a
        # task's CPU to set up and call off (docs/performance.md, WORKERCPU).
        self._hold_timer: asyncio.TimerHandle | None = None
        self._holder: asyncio.Task[None] | None = None  # the due save, once the timer fired
        self._failed: BaseException | None = None  # a held report's save failed: told next time
        self._prompt_tokens = 0
        self._completion_tokens = 0
        self._usage_seen = False

    @property
    def engine(self) -> str:
        """Which engine produces this attempt's result: a model's, or the offline one."""
        return self.llm.engine if self.llm is not None else "offline"

    @property
    def model(self) -> str | None:
        return self.llm.model if self.llm is not None else None

    def add_usage(self, usage: Usage | None) -> None:
        """Counts a model call's tokens towards the attempt's usage."""
        if usage is not None:
            self._usage_seen = True
            self._prompt_tokens += usage.prompt_tokens
            self._completion_tokens += usage.completion_tokens

    def usage(self) -> dict[str, int] | None:
        """Tokens used by this attempt, or None when no model reported any."""
        if not self._usage_seen:
            return None
        return {
            "prompt_tokens": self._prompt_tokens,
            "completion_tokens": self._completion_tokens,
            "total_tokens": self._prompt_tokens + self._completion_tokens,
        }

    async def record_model_call(self, call: RecordedCall) -> Written:
        """Records a model call of this attempt as a Task.ModelCalled event (docs/cost.md)."""
        return await self._write(self._model_call(call))

    def _model_call(self, call: RecordedCall) -> Step:
        self.model_calls += 1
        self.model_tokens += call.prompt_tokens + call.completion_tokens
        if call.cost_usd is None:
            self.unpriced_calls += 1
        else:
            self.spent_usd += call.cost_usd
        fields: dict[str, Any] = {
            "step": self.model_calls,
            "model": call.model,
            "provider": call.provider,
            "prompt_tokens": call.prompt_tokens,
            "completion_tokens": call.completion_tokens,
            "cached_tokens": call.cached_tokens,
            "usage": call.usage,
            "latency_ms": call.latency_ms,
            "cost_usd": None if call.cost_usd is None else format_usd(call.cost_usd),
            "price_source": call.price_source,
            "price_version": call.price_version,
        }
        attempt = self.attempt
        return lambda task: task.record_model_call(attempt, **fields)

    async def progress(self, percent: int, message: str) -> None:
        """Reports progress; it never goes down, and 100 is left to completion.

        Held for the attempt's next write (at most `hold_at_most` seconds): the same event,
        in the same order, in one append with what follows it.
        """
        if self._failed is not None:
            raise self._failed
        percent = max(self._progress, min(99, int(percent)))
        self._progress = percent
        attempt = self.attempt
        self._hold_partial()  # text streamed before this report is stored before it
        self._hold(lambda task: task.report_progress(attempt, percent, message))

    async def note(
        self, message: str, data: dict[str, Any] | None = None, *, error: bool = False
    ) -> None:
        """Reports information, or an error the task survives (one source of several failed)."""
        attempt = self.attempt
        await self._write(lambda task: task.note(attempt, message, data, error=error))

    def stream_text(self, delta: str) -> None:
        """Takes a piece of streamed text; it is recorded with the next batch."""
        if not delta:
            return
        self._partial.append(delta)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_later())

    async def end_stream(self) -> None:
        """Ends a stream: its buffered text is stored with the next write (the model call)."""
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        self._hold_partial()

    async def complete(self, result: dict[str, Any], message: str = "") -> Written:
        """Completes the attempt with its result; one too large to store fails the attempt."""
        size = len(msgspec.json.encode(result))
        if size > MAX_RESULT_BYTES:
            raise AgentError(
                "result_too_large",
                f"the result is {size:,} bytes of JSON; a result may be at most "
                f"{MAX_RESULT_BYTES:,} bytes",
            )
        await self.end_stream()
        steps = []
        if self.offline_result and self.model_calls == 0:
            # The offline engine's work is recorded like a model call, at no cost, so a task's
            # cost says "0, offline" rather than nothing at all.
            steps.append(self._model_call(OFFLINE_CALL))
        attempt = self.attempt
        steps.append(lambda task: task.complete(attempt, result, message))
        return await self._write(*steps)

    async def close(self) -> None:
        """Stops the flushers and stores the held reports (the attempt ended some other way)."""
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        for flusher in (self._flusher, self._holder):
            if flusher is not None:
                flusher.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await flusher
        if self._held and self._failed is None:
            # The progress an agent reported before failing stays part of its history; an
            # attempt already over (cancelled, taken over) is refused, as each report would be.
            with contextlib.suppress(Exception):
                await self._save()

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._partial_every)
        await self._flush()

    async def _flush(self) -> None:
        self._hold_partial()
        await self._save()

    def _hold_partial(self) -> None:
        """Moves the buffered streamed text into the held reports, as one partial result."""
        if not self._partial:
            return
        text = "".join(self._partial)
        self._partial.clear()
        offset, self._partial_offset = self._partial_offset, self._partial_offset + len(text)
        # Deltas with their offset, not the whole text so far: events stay small however long
        # the output, and a client that sees every update in order can rebuild the text exactly.
        data = {"partial": {"offset": offset, "text": text}}
        attempt = self.attempt
        self._hold(lambda task: task.record_result(attempt, data, "Writing"))

    def _hold(self, step: Step) -> None:
        self._held.append(step)
        if self._hold_timer is None and (self._holder is None or self._holder.done()):
            # The timer's callback runs in a copy of this context: the save, the attempt's trace.
            loop = asyncio.get_running_loop()
            self._hold_timer = loop.call_later(self._hold_at_most, self._held_due)

    def _held_due(self) -> None:
        self._hold_timer = None
        self._holder = asyncio.get_running_loop().create_task(self._save_held())

    async def _save_held(self) -> None:
        try:
            await self._save()
        except Exception as error:  # the agent hears of it at its next report
            self._failed = error

    async def _write(self, *steps: Step) -> Written:
        """Saves the held reports and `steps` in one append; see `_save`."""
        written = await self._save(*steps)
        assert written is not None
        return written

    async def _save(self, *steps: Step) -> Written | None:
        """Saves the held reports and `steps` in order, in one append, from the task we hold.

        The aggregate refuses a stale attempt's event (RuleViolation): the attempt is over.
        """
        async with self._lock:
            if self._failed is not None:
                raise self._failed
            steps = (*self._held, *steps)
            self._held.clear()
            if not steps:
                return None
            known, self._known = self._known, None
            try:
                written = await self._report(steps, known)
            except RuleViolation as refused:
                raise AttemptOver(str(refused)) from None
            except UnstorableValue as refused:  # e.g. a model's JSON nested 500 levels deep
                message = f"the agent's output cannot be stored: {refused}"
                raise AgentError("invalid_output", message) from None
            self._known = written.task
            return written

    async def _report(self, steps: tuple[Step, ...], known: Task | None) -> Written:
        """report_many, tried again while the events table stays locked (nothing was stored)."""
        for delay in (*LOCK_RETRY_DELAYS, None):
            try:
                return await self._report_once(steps, known)
            except AppendLockTimeout as error:
                if delay is None:
                    raise  # the worker hands the attempt's message back (runtime.py)
                log.warning(
                    "attempt %d of %s: %s; trying again in %g s",
                    self.attempt,
                    self.task_id,
                    error,
                    delay,
                )
                known = None  # the copy took the unsaved events: load the stored task instead
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # the last delay is None: it raised

    async def _report_once(self, steps: tuple[Step, ...], known: Task | None) -> Written:
        """report_many: on the loop from the copy we hold, else (or after a clash) on a thread."""
        if self._committer is not None and known is not None:
            try:
                return await self._report_on_loop(steps, known)
            except IntegrityError:
                # Someone else wrote the task since our copy (a cancel, a takeover): nothing of
                # ours was stored; the thread path loads it afresh and the aggregate decides.
                known = None
            except (psycopg.OperationalError, psycopg.InterfaceError) as error:
                if not session_lost(error):
                    raise  # a statement timeout of a live session: not waited out twice
                # Postgres went away (a restart): the store's pool waits for it to come back.
                # Had the append committed, the fresh load has it and the aggregate decides.
                known = None
        # With the attempt's context variables (its trace), on the store's threads.
        return await self._offload.call(
            self._commands.report_many, self.task_id, steps, known=known
        )

    async def _report_on_loop(self, steps: tuple[Step, ...], known: Task) -> Written:
        """The steps applied to our copy (each refuses a stale attempt) and saved in one append."""
        assert self._committer is not None
        # As TaskCommands._update does: the events record the trace of the span under way.
        token = command_trace.set(context.current_traceparent())
        try:
            for step in steps:
                step(known)
        finally:
            command_trace.reset(token)
        positions = await self._committer.save(known)
        return Written(self.task_id, positions[-1], task=known)
