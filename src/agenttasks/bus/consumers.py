"""Consumers on the event stream: durable pull consumers, and an in-order reader.

`PullConsumer` (workers): a durable shared by every process that binds to the same name; its
config is declared with `add_consumer` every time (NOTES: `pull_subscribe` on an existing
durable silently ignores a new config). Redelivery comes after the ack wait, out of order.

`StreamReader` (projectors): the stream in sequence order from a given sequence, for a caller
that keeps its own cursor. Callers get `Delivery` objects and never touch nats-py themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from dataclasses import dataclass
from typing import TypedDict

from nats.errors import ConnectionClosedError, NoRespondersError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError, ServiceUnavailableError

from agenttasks.bus.ack_subject import NotAnAckSubject, ack_numbers
from agenttasks.bus.lingering import LingeringPull, PullEnded
from agenttasks.bus.messages import ALL_SUBJECTS, STREAM

log = logging.getLogger(__name__)

# Failures of a JetStream API request that pass (a leader election, a reconnect).
_TRANSIENT = (TimeoutError, ServiceUnavailableError, NoRespondersError, ConnectionClosedError)


class ConsumerOptions(TypedDict, total=False):
    """The keyword options of `PullConsumer.bind`, for callers that pass them on."""

    subjects: list[str] | None
    ack_wait: float
    max_deliver: int
    max_ack_pending: int
    ack_all: bool
    start_sequence: int | None
    declare: bool
    lingering: bool


class StreamMissing(RuntimeError):
    """The event stream does not exist yet (the relay creates it when it first leads)."""


class BusUnavailable(RuntimeError):
    """NATS could not be asked (disconnected, timed out); try again later."""


@dataclass(slots=True)
class Delivery:
    """One delivered message: its payload, and how to settle it."""

    data: bytes
    delivered: int  # how many times it has been delivered, this one included
    _message: object
    sequence: int = 0  # its stream sequence: dense, one per published event
    consumer_sequence: int = 0  # the consumer's count of deliveries, this one included

    @property
    def subject(self) -> str:
        """The subject it was published on (messages.py's task_subject names task and kind)."""
        return str(getattr(self._message, "subject", ""))

    @property
    def traceparent(self) -> str | None:
        """The message's `traceparent` header as sent (unchecked: parse it before use)."""
        headers = getattr(self._message, "headers", None)
        return headers.get("traceparent") if headers else None

    async def ack(self) -> None:
        """Done with it: never deliver it again."""
        await self._message.ack()  # type: ignore[attr-defined]

    async def nak(self, delay: float | None = None) -> None:
        """Not now: deliver it again (after `delay` seconds)."""
        await self._message.nak(delay=delay)  # type: ignore[attr-defined]

    async def in_progress(self) -> None:
        """Still working on it: restart the redelivery timer."""
        await self._message.in_progress()  # type: ignore[attr-defined]


class PullConsumer:
    """A durable pull consumer, shared by every process that binds to the same name."""

    def __init__(self, subscription: object, pull: LingeringPull | None = None) -> None:
        self._subscription = subscription
        self._pull = pull

    @classmethod
    async def bind(
        cls,
        js: JetStreamContext,
        name: str,
        *,
        subjects: list[str] | None = None,
        ack_wait: float = 30.0,
        max_deliver: int = -1,
        max_ack_pending: int = 1000,
        ack_all: bool = False,
        start_sequence: int | None = None,
        declare: bool = True,
        lingering: bool = False,
    ) -> PullConsumer:
        """Declares (or updates) consumer `name` and binds to it.

        `ack_all`: acknowledging a message acknowledges every earlier one too (AckPolicy.ALL;
        fixed when the consumer is created). `start_sequence`: a new consumer starts at that
        stream sequence instead of the first. `declare=False` binds to the consumer as it is.
        `lingering`: fetches share one open pull request and return as soon as a message is
        there (bus/lingering.py; the workers' latency-bound consumers).
        """
        filters = subjects or [ALL_SUBJECTS]
        filtering = (
            {"filter_subject": filters[0]} if len(filters) == 1 else {"filter_subjects": filters}
        )
        policy = DeliverPolicy.ALL if start_sequence is None else DeliverPolicy.BY_START_SEQUENCE
        config = ConsumerConfig(
            durable_name=name,
            ack_policy=AckPolicy.ALL if ack_all else AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            max_ack_pending=max_ack_pending,
            deliver_policy=policy,
            opt_start_seq=start_sequence,
            **filtering,
        )
        try:
            if declare:
                await js.add_consumer(STREAM, config)
        except NotFoundError:
            raise StreamMissing(f"stream {STREAM} does not exist yet") from None
        except _TRANSIENT as error:
            # A cluster still electing the consumer's leader, or NATS away: worth another try.
            raise BusUnavailable(f"cannot bind consumer {name}: {error!r}") from error
        if lingering:
            return cls(None, await _lingering(js, name))
        return cls(await js.pull_subscribe_bind(durable=name, stream=STREAM))

    async def fetch(self, batch: int, wait: float) -> list[Delivery]:
        """Up to `batch` messages, waiting at most `wait` seconds for the first."""
        try:
            if self._pull is not None:
                messages = await self._pull.fetch(batch, wait)
            else:
                messages = await self._subscription.fetch(batch, timeout=wait)  # type: ignore[attr-defined]
        except TimeoutError:  # nats-py raises its own subclass, or asyncio's, when nothing came
            return []
        except PullEnded as error:  # e.g. the consumer was deleted: the caller tries again
            raise BusUnavailable(str(error)) from None
        deliveries = []
        for m in messages:
            try:
                delivered, sequence, consumer_sequence = ack_numbers(m.reply)
            except NotAnAckSubject as error:
                _not_delivered(error)
                continue
            deliveries.append(Delivery(m.data, delivered, m, sequence, consumer_sequence))
        return deliveries

    async def close(self) -> None:
        """Stops fetching (the durable consumer and its position stay on the server)."""
        if self._pull is not None:
            await self._pull.close()
        else:
            await self._subscription.unsubscribe()  # type: ignore[attr-defined]


async def _lingering(js: JetStreamContext, consumer: str) -> LingeringPull:
    # nats-py keeps the connection and the API prefix on the context it hands out.
    return await LingeringPull(js._nc, js._prefix, STREAM, consumer).open()


def _not_delivered(error: NotAnAckSubject) -> None:
    # Only a JetStream delivery has an ack subject: anything else on our inbox was published
    # there by someone else, cannot be settled, and carries no sequence to trust.
    log.warning("message without a JetStream ack subject passed over: %s", error)


READER_IDLE_SECONDS = 30.0  # a reader's consumer outlives its process (kill -9) this long


class StreamReader:
    """Every message of the stream in sequence order, from a sequence the caller chooses.

    An ephemeral pull consumer of this process alone (never shared, so no other process takes
    messages from it) with no acks: the caller's own cursor (a tracking row) decides where to
    start, so nothing here can move past a message the caller has not stored. Stream sequences
    are dense (the relay publishes in order, each event once), so a message that does not
    follow the previous one means deliveries were lost (a reconnect): the batch ends before it
    and the consumer is recreated at the missing sequence. Only the first message after a seek
    may jump: then the stream itself lacks the messages in between, and the caller decides.
    Its fetches go through one lingering pull request (bus/lingering.py), as the workers' do:
    nats-py's `fetch` cost ~2.4x the CPU per message here (bench/bench_consume.py).
    """

    def __init__(self, js: JetStreamContext, prefix: str) -> None:
        self._js = js
        self._prefix = prefix
        self._name: str | None = None
        self._pull: LingeringPull | None = None
        self.next_sequence = 1  # the sequence the next message should have
        self._just_sought = False

    @classmethod
    async def open(cls, js: JetStreamContext, prefix: str, sequence: int) -> StreamReader:
        """A reader positioned at `sequence`; StreamMissing until the relay made the stream."""
        reader = cls(js, prefix)
        await reader.seek(sequence)
        return reader

    async def seek(self, sequence: int) -> None:
        """Repositions the reader: the next message fetched is the one at `sequence` (or after)."""
        await self._drop()
        name = f"{self._prefix}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        name = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        config = ConsumerConfig(
            name=name,
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=max(1, sequence),
            inactive_threshold=READER_IDLE_SECONDS,
            mem_storage=True,
            num_replicas=1,
        )
        try:
            await self._js.add_consumer(STREAM, config)
            self._name = name
            self._pull = await _lingering(self._js, name)
        except NotFoundError:
            raise StreamMissing(f"stream {STREAM} does not exist yet") from None
        except Exception as error:  # disconnected, timed out: the caller tries again later
            raise BusUnavailable(f"cannot create a stream reader: {error!r}") from error
        self.next_sequence = max(1, sequence)
        self._just_sought = True

    async def fetch(self, batch: int, wait: float) -> list[Delivery]:
        """Up to `batch` consecutive messages from `next_sequence`, waiting at most `wait` s."""
        if self._pull is None:  # a seek failed (NATS was away): try it again
            await self.seek(self.next_sequence)
        assert self._pull is not None
        try:
            messages = await self._pull.fetch(batch, wait)
        except Exception as error:  # the consumer is gone (idle, server restart): recreate it
            log.warning("stream reader %s: %s; recreating it", self._name, error)
            await asyncio.sleep(0.2)
            await self.seek(self.next_sequence)
            return []
        deliveries: list[Delivery] = []
        for message in messages:
            try:
                delivered, sequence, _ = ack_numbers(message.reply)
            except NotAnAckSubject as error:
                _not_delivered(error)
                continue
            if sequence != self.next_sequence and not (self._just_sought and not deliveries):
                log.warning(
                    "stream reader %s: got sequence %s, expected %s; re-reading from there",
                    self._name, sequence, self.next_sequence,
                )  # fmt: skip
                await self.seek(self.next_sequence)
                break
            self._just_sought = False
            deliveries.append(Delivery(message.data, delivered, message, sequence))
            self.next_sequence = sequence + 1
        return deliveries

    async def close(self) -> None:
        """Deletes the consumer (it would expire by itself after READER_IDLE_SECONDS)."""
        await self._drop()

    async def _drop(self) -> None:
        if self._pull is not None:
            with contextlib.suppress(Exception):
                await self._pull.close()
            self._pull = None
        if self._name is not None:
            with contextlib.suppress(Exception):  # gone already, or the connection is down
                await self._js.delete_consumer(STREAM, self._name)
            self._name = None


async def stream_bounds(js: JetStreamContext) -> tuple[int, int]:
    """(first, last) sequence held by the event stream; (1, 0) when it does not exist yet."""
    try:
        info = await js.stream_info(STREAM)
    except NotFoundError:
        return 1, 0
    except Exception as error:
        raise BusUnavailable(f"cannot read the stream's state: {error!r}") from error
    return info.state.first_seq, info.state.last_seq


@dataclass(frozen=True)
class ConsumerPosition:
    """Where a durable consumer stands (stream sequences, except `delivered`)."""

    ack_floor: int  # every message at or below it is acknowledged
    ack_pending: int  # delivered, not acknowledged
    delivered: int  # the consumer's count of deliveries so far (its last consumer sequence)


async def consumer_position(js: JetStreamContext, name: str) -> ConsumerPosition | None:
    """The position of durable consumer `name` of the event stream; None when it does not exist."""
    try:
        info = await js.consumer_info(STREAM, name)
    except NotFoundError:
        return None
    except _TRANSIENT as error:
        raise BusUnavailable(f"cannot read consumer {name}: {error!r}") from error
    floor = info.ack_floor.stream_seq if info.ack_floor else 0
    delivered = info.delivered.consumer_seq if info.delivered else 0
    return ConsumerPosition(floor or 0, info.num_ack_pending or 0, delivered or 0)


@dataclass(frozen=True)
class ConsumerCounts:
    """What a durable consumer holds: messages not yet delivered, delivered and not acked."""

    pending: int  # num_pending: matching messages no one has fetched yet
    ack_pending: int  # num_ack_pending: fetched, not acknowledged (held or running)
    redelivered: int  # num_redelivered: of those, delivered more than once


# Each consumer's question waits this long: a view refreshed every few seconds must not hang.
COUNTS_TIMEOUT_SECONDS = 2.0


async def consumer_counts(js: JetStreamContext, names: list[str]) -> dict[str, ConsumerCounts]:
    """The counts of each named consumer of the event stream that exists (asked at once)."""

    async def one(name: str) -> tuple[str, ConsumerCounts | None]:
        try:
            info = await js.consumer_info(STREAM, name, timeout=COUNTS_TIMEOUT_SECONDS)
        except NotFoundError:  # never bound (or no stream yet): nothing waits on it
            return name, None
        return name, ConsumerCounts(
            info.num_pending or 0, info.num_ack_pending or 0, info.num_redelivered or 0
        )

    try:
        answers = await asyncio.gather(*(one(name) for name in names))
    except Exception as error:
        raise BusUnavailable(f"cannot read the consumers' state: {error!r}") from error
    return {name: counts for name, counts in answers if counts is not None}


async def delete_consumer(js: JetStreamContext, name: str) -> None:
    """Deletes consumer `name` of the event stream if it exists (best effort)."""
    with contextlib.suppress(Exception):  # none there, or NATS is away: nothing to do now
        await js.delete_consumer(STREAM, name)
