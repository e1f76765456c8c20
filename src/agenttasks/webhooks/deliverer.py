"""The deliverer role: task endings from JetStream into an outbox, and the outbox to endpoints.

Intake: a durable pull consumer (`webhooks-intake`, intake.py: one deliverer at a time, one
ack per batch) on the task events that end a task. For each, the owner's endpoints that take
the event, and the task's own `webhook_url`, each get one pending row in `webhook_deliveries`
(unique by target and webhook-id) before the batch is acked: a redelivered message adds
nothing, and a crash before the ack loses nothing. The consumer also takes Created messages,
for the task's `webhook_url`: an ending whose owner has no endpoint and whose task has no URL
needs no database work at all (interest.py says when that is known; otherwise the store and
the endpoint table are read as before).

Dispatch: due rows are claimed with a lease (FOR UPDATE SKIP LOCKED), never more than the total
concurrency and never more than the per-endpoint concurrency for one target, so a slow endpoint
holds only its own slots. A deliverer that dies mid-attempt leaves its rows due again when the
lease runs out: the attempt is made again with the same `webhook-id`, which receivers drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec
from psycopg_pool import AsyncConnectionPool

from agenttasks.application.store import EventStore
from agenttasks.application.webhooks import (
    BUDGET_EVENT_TYPES,
    KIND_OF_EVENT,
    host_and_port,
    task_url_secret,
)
from agenttasks.bus.connection import Bus
from agenttasks.bus.consumers import Delivery
from agenttasks.bus.messages import (
    SUBJECT_ROOT,
    BudgetEvent,
    TaskEvent,
    budget_subject,
    decode,
    message_id,
    task_subject,
)
from agenttasks.domain.task import Task
from agenttasks.outage import Outage
from agenttasks.webhooks import store as tables
from agenttasks.webhooks.intake import CONSUMER as INTAKE_CONSUMER
from agenttasks.webhooks.intake import IntakeConsumer, Leadership
from agenttasks.webhooks.interest import EndpointOwners, TaskUrls
from agenttasks.webhooks.sender import Sender
from agenttasks.webhooks.signing import headers

log = logging.getLogger(__name__)

CONSUMER = INTAKE_CONSUMER  # the intake's durable consumer (metrics, tests)
BATCH = 256  # messages fetched at once, all acknowledged by one ack
GATHER_SECONDS = 0.02  # after a short batch, before the next fetch (a webhook waits this longer)
POLL_SECONDS = 0.5  # a due retry is noticed within this long
_encoder = msgspec.json.Encoder()
_UNKNOWN = object()  # a Created payload without the field (not a URL, not None)
_TASK_SUBJECTS = f"{SUBJECT_ROOT}.task."  # then <task_type>.<priority>.<task_id>.<kind>


class _CreatedData(msgspec.Struct):
    webhook_url: str | msgspec.UnsetType | None = msgspec.UNSET


class _Created(msgspec.Struct):
    """What the intake needs of a published Created; the rest of it is never decoded."""

    task_id: str
    user: str
    data: _CreatedData


_created = msgspec.json.Decoder(_Created)


@dataclass(frozen=True)
class DeliveryOptions:
    """The deliverer's caps (settings `webhook_*`)."""

    concurrency: int = 32
    concurrency_per_endpoint: int = 4
    timeout: float = 10.0
    retry_seconds: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
    task_url_cache: int = 20_000  # tasks whose webhook_url is remembered from Created
    owner_cache: int = 100_000  # owners with endpoints cached (more: never cached)


def intake_subjects() -> list[str]:
    """What the intake consumer takes: Created (for webhook_url), the endings, budget alerts."""
    subjects = [task_subject(kind=kind) for kind in ("created", *KIND_OF_EVENT.values())]
    return subjects + [budget_subject(name.removeprefix("budget.")) for name in BUDGET_EVENT_TYPES]


def body_of(event: TaskEvent) -> bytes:
    """What is posted: Standard Webhooks' {type, timestamp, data}, data the bus payload."""
    return _encoder.encode(
        {
            "type": f"task.{event.type}",
            "timestamp": event.timestamp,
            "data": msgspec.to_builtins(event),
        }
    )


class Deliverer:
    """Takes task endings from the bus and delivers them; one or more per deployment."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        bus: Bus,
        store: EventStore,
        sender: Sender,
        options: DeliveryOptions,
        service_secret: str,
    ) -> None:
        self._pool = pool
        self._bus = bus
        self._store = store
        self._sender = sender
        self._options = options
        self._service_secret = service_secret
        self._wake = asyncio.Event()
        self._in_flight: dict[str, int] = {}
        self.task_urls = TaskUrls(options.task_url_cache)
        self.owners = EndpointOwners(_url_of(pool), options.owner_cache)
        self.skipped = 0  # endings passed over without the database (tests and logs)
        self.intake: Leadership | None = None  # set once running
        self._tasks: set[asyncio.Task[None]] = set()
        # An outage of Postgres or NATS is logged when it starts and when it ends, not per poll.
        self._database = Outage("webhooks: Postgres", log)
        self._bus_outage = Outage("webhooks: NATS", log)
        self.attempts_made = 0  # this process's attempts (tests and logs)

    async def run(self, stop: asyncio.Event) -> None:
        """Intake and dispatch until `stop`; attempts under way are finished first."""
        async with self._pool.connection() as connection:
            await tables.ensure_tables(connection)
        try:
            await asyncio.gather(self._intake(stop), self._dispatch(stop), self.owners.run(stop))
        finally:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    # Intake ------------------------------------------------------------------------------

    async def _intake(self, stop: asyncio.Event) -> None:
        self.intake = Leadership(_url_of(self._pool), self._bus, intake_subjects())

        async def take(intake: IntakeConsumer, leading: Callable[[], Awaitable[None]]) -> None:
            await self._take_batches(intake, leading, stop)

        await self.intake.run(stop, take)

    async def _take_batches(
        self,
        intake: IntakeConsumer,
        leading: Callable[[], Awaitable[None]],
        stop: asyncio.Event,
    ) -> None:
        # Returns (or raises) to be bound again from the ack floor; nothing of the batch under
        # way is acknowledged then.
        while not stop.is_set():
            try:
                deliveries = await intake.fetch(BATCH, 1.0)
                self._bus_outage.restored()
            except Exception as error:  # NATS is away: what was not acked comes again
                self._bus_outage.failed(error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                continue
            if not deliveries:
                await leading()  # an idle leader notices a lost lock too (once a second)
                continue
            await asyncio.sleep(0)  # an endpoint change already in the socket is read first
            enqueued = False
            for delivery in deliveries:
                if not intake.follows(delivery):
                    return
                enqueued |= await self._take(delivery)  # raises when the outbox is away
            await leading()
            try:
                await intake.ack_through(deliveries)
            except Exception as error:  # redelivered later; the outbox rows are already there
                log.warning("webhooks: cannot ack through %s: %r", deliveries[-1].sequence, error)
            if enqueued:
                self._wake.set()  # only then is there anything new to claim
            if len(deliveries) < BATCH:
                # A short batch: let the next gather for a moment rather than fetch per message
                # (each fetch is two pull requests and their answers, here and in nats-server).
                await asyncio.sleep(GATHER_SECONDS)

    async def _take(self, delivery: Delivery) -> bool:
        """Puts one message's deliveries in the outbox; True when it added any target."""
        # Most messages need nothing: a Created only teaches TaskUrls, and most endings go to
        # nobody. The subject names the task and the kind, so those are known before (or
        # without) decoding the payload, the deliverer's largest cost per message.
        subject = delivery.subject
        if subject.startswith(_TASK_SUBJECTS):
            task_id, kind = subject.rsplit(".", 2)[1:]
            if kind == "created" and self._learn(delivery.data):
                return False
            owner = self.task_urls.owner_without_url(task_id)
            if kind != "created" and owner is not None and self.owners.has_none(owner):
                self.skipped += 1
                return False  # as _enqueue would: no URL, its owner no endpoint
        try:
            event = decode(delivery.data)
        except msgspec.DecodeError:
            log.warning("webhooks: stream message %s is not an event; skipped", delivery.sequence)
            return False
        if not isinstance(event, TaskEvent | BudgetEvent):
            return False
        if isinstance(event, TaskEvent) and event.type == "created":
            url = event.data.get("webhook_url", _UNKNOWN)
            if url is None or isinstance(url, str):
                self.task_urls.learn(event.task_id, url, event.user)
            return False
        try:
            if isinstance(event, BudgetEvent):
                return await self._enqueue_budget(event)
            return await self._enqueue(event)
        except Exception as error:  # the database is away: the batch comes again
            log.warning("webhooks: cannot enqueue position %s: %r", event.position, error)
            raise

    def _learn(self, payload: bytes) -> bool:
        """Learns a Created's URL and owner from the few fields read; False: decode it all."""
        try:
            created = _created.decode(payload)
        except msgspec.DecodeError:  # not the shape expected: the full decode says what it is
            return False
        url = created.data.webhook_url
        if url is not msgspec.UNSET:
            self.task_urls.learn(created.task_id, url, created.user)
        return True

    async def _enqueue(self, event: TaskEvent) -> bool:
        event_type = f"task.{event.type}"
        task_id = UUID(event.task_id)
        known, task_url = self.task_urls.get(event.task_id)
        no_endpoints = self.owners.has_none(event.user)
        if known and task_url is None and no_endpoints:
            self.skipped += 1
            return False  # nobody asked for it: no store read, no transaction
        if not known:
            task_url = await asyncio.to_thread(self._task_url, task_id)
        if task_url is None and no_endpoints:
            self.skipped += 1
            return False
        async with self._pool.connection() as connection, connection.transaction():
            targets = []
            if not no_endpoints:
                targets = await tables.targets(connection, event.user, event_type, event.timestamp)
            if task_url is not None:
                # Tasks' own URLs are grouped by the host they go to, for the per-endpoint cap.
                host, port = host_and_port(task_url)
                targets.append(tables.Target(f"task:{host}:{port}", None, task_url))
            await tables.enqueue(
                connection,
                targets,
                message_id=message_id(event),
                owner=event.user,
                task_id=task_id,
                event_type=event_type,
                body=body_of(event),
            )
        return bool(targets)

    async def _enqueue_budget(self, event: BudgetEvent) -> bool:
        # To the user's endpoints that asked for it; never to a task's own webhook_url.
        event_type = f"budget.{event.type}"
        if self.owners.has_none(event.user):
            return False
        async with self._pool.connection() as connection, connection.transaction():
            targets = await tables.targets(connection, event.user, event_type, event.timestamp)
            await tables.enqueue(
                connection,
                targets,
                message_id=message_id(event),
                owner=event.user,
                task_id=UUID(event.task_id),
                event_type=event_type,
                body=_encoder.encode(
                    {
                        "type": event_type,
                        "timestamp": event.timestamp,
                        "data": msgspec.to_builtins(event),
                    }
                ),
            )
        return bool(targets)

    def _task_url(self, task_id: UUID) -> str | None:
        # The Created event alone: a task's later events do not change its webhook_url.
        for first in self._store.events.get(task_id, limit=1):
            if isinstance(first, Task.Created):
                return first.webhook_url
        return None

    # Dispatch ----------------------------------------------------------------------------

    async def _dispatch(self, stop: asyncio.Event) -> None:
        options = self._options
        lease = options.timeout * 2 + 5  # past any attempt's end, with room for recording it
        while not stop.is_set():
            free = options.concurrency - sum(self._in_flight.values())
            busy = [t for t, n in self._in_flight.items() if n >= options.concurrency_per_endpoint]
            claimed: list[tables.Due] = []
            if free > 0:
                try:
                    async with self._pool.connection() as connection:
                        claimed = await tables.claim(connection, free, busy, lease)
                    self._database.restored()
                except Exception as error:
                    self._database.failed(error)
            chosen = self._within_caps(claimed)
            for due in chosen:
                self._start(due)
            if len(chosen) < len(claimed):  # over an endpoint's cap: due again at once
                await self._release([d.id for d in claimed if d not in chosen])
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)

    async def _release(self, ids: list[int]) -> None:
        try:
            async with self._pool.connection() as connection:
                await tables.release(connection, ids)
        except Exception as error:  # their lease runs out instead
            log.warning("webhooks: cannot release deliveries: %r", error)

    def _within_caps(self, claimed: list[tables.Due]) -> list[tables.Due]:
        # One claim may hold several rows of one target: beyond its cap they wait their turn.
        chosen, counts = [], dict(self._in_flight)
        for due in claimed:
            if counts.get(due.target, 0) < self._options.concurrency_per_endpoint:
                counts[due.target] = counts.get(due.target, 0) + 1
                chosen.append(due)
        return chosen

    def _start(self, due: tables.Due) -> None:
        self._in_flight[due.target] = self._in_flight.get(due.target, 0) + 1
        task = asyncio.create_task(self._attempt(due))
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            left = self._in_flight.get(due.target, 1) - 1
            if left:
                self._in_flight[due.target] = left
            else:
                self._in_flight.pop(due.target, None)
            self._wake.set()

        task.add_done_callback(done)

    async def _attempt(self, due: tables.Due) -> None:
        try:
            if due.endpoint_status == "disabled":
                async with self._pool.connection() as connection:
                    await connection.execute(
                        "UPDATE webhook_deliveries SET status = 'cancelled' WHERE id = %s",
                        (due.id,),
                    )
                return
            secret = due.secret or task_url_secret(self._service_secret, due.owner)
            started = time.monotonic()
            answer = await self._sender.post(
                due.url, due.body, headers(secret, due.message_id, int(time.time()), due.body)
            )
            self.attempts_made += 1
            elapsed = int((time.monotonic() - started) * 1000)
            schedule = self._options.retry_seconds
            retry_in = schedule[due.attempts] if due.attempts < len(schedule) else None
            if not answer.retryable:
                retry_in = None
            disable = None
            if answer.error is not None and retry_in is None:
                disable = (
                    f"disabled after {due.attempts + 1} failed attempts to deliver "
                    f"{due.message_id}; the last: {answer.error}"
                )
            async with self._pool.connection() as connection:
                await tables.record_attempt(
                    connection,
                    due,
                    status_code=answer.status_code,
                    error=answer.error,
                    duration_ms=elapsed,
                    retry_in=None if answer.error is None else retry_in,
                    disable_reason=disable,
                )
        except Exception:  # the lease runs out and the attempt is made again
            log.exception("webhooks: attempt of delivery %s failed unexpectedly", due.id)


def _url_of(pool: AsyncConnectionPool[Any]) -> str:
    """The pool's connection string (the owners' LISTEN connection is one of its own)."""
    return str(pool.conninfo)
