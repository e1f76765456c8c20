"""Publishing stored events to JetStream in order, each exactly once in the stream.

Every message carries `Nats-Msg-Id` (JetStream drops a repeat within the duplicate window) and
the id of the message it must follow (`Nats-Expected-Last-Msg-Id`; `Nats-Expected-Last-Sequence`
for the first one). Messages are pipelined, so a connection that breaks mid-batch could lose one
message while later ones get through on reconnect; the expectation makes the server refuse
those later ones instead of storing them out of order. The caller then re-reads the stream's last
message and resumes after it.

Only the batch's last message asks for an acknowledgement. That one ack vouches for the whole
batch: the server stores a message only right after the one it names (or the sequence), so the
last one stored means its predecessor is the stream's message before it, and so on back to the
first, which followed `after_sequence`. A message refused in the middle (or lost) breaks the chain
and every later one is refused, the last included: its ack is the error. nats-py's
`publish_async` waited for an ack per message (a future, a token, a semaphore slot, a JSON parse
through dataclass introspection each), a third of the relay's CPU per event in a batch, and the
server sent each one (docs/performance.md, "The relay's hop").

The relay publishes through OrderedPublisher, which does not wait for a batch's ack before the
next batch (docs/performance.md, section RELAYHOP): the same chain, carried across batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.api import Header

from agenttasks.bus.messages import STREAM, BusEvent, encode, message_id, subject_of

if TYPE_CHECKING:  # connection.py imports this module
    from agenttasks.bus.connection import Bus

ACK_TIMEOUT_SECONDS = 5.0
# W3C trace context on each message (docs/operations.md, "Logs and traces"): consumers continue
# the trace of the command that stored the event.
TRACEPARENT = "traceparent"


class PublishFailed(RuntimeError):
    """A batch was not (entirely) stored; re-read `last_published` and resume from there."""


class _Position(msgspec.Struct):
    position: int


class _AckError(msgspec.Struct):
    err_code: int = 0
    description: str = ""


class _Ack(msgspec.Struct):
    """JetStream's answer to a publish; unknown fields ignored (the server adds new ones)."""

    seq: int = 0
    error: _AckError | None = None


_ack_decoder = msgspec.json.Decoder(_Ack)


async def last_published(js: JetStreamContext) -> tuple[int, int]:
    """(position of the last event in the stream, its stream sequence); (0, 0) when empty."""
    info = await js.stream_info(STREAM)
    last_sequence = info.state.last_seq
    if not info.state.messages or not last_sequence:
        return 0, last_sequence
    message = await js.get_msg(STREAM, seq=last_sequence)
    return msgspec.json.decode(message.data or b"{}", type=_Position).position, last_sequence


async def publish_in_order(
    nc: Client,
    events: Sequence[BusEvent],
    after_sequence: int,
    traceparents: Sequence[str | None] | None = None,
) -> int:
    """Publishes `events` after the stream's message `after_sequence`; returns the new last one.

    `traceparents[i]`, when given and not None, goes with `events[i]` as its `traceparent` header.
    """
    if not events:
        return after_sequence
    previous: str | None = None
    last = len(events) - 1
    try:
        for index, event in enumerate(events):
            headers: dict[str, str] = {Header.MSG_ID: message_id(event)}
            if traceparents is not None and (traceparent := traceparents[index]) is not None:
                headers[TRACEPARENT] = traceparent
            if previous is None:
                headers[Header.EXPECTED_LAST_SEQUENCE] = str(after_sequence)
            else:
                headers[Header.EXPECTED_LAST_MSG_ID] = previous
            previous = headers[Header.MSG_ID]
            if index < last:
                await nc.publish(subject_of(event), encode(event), headers=headers)
            else:
                reply = await nc.request(
                    subject_of(event), encode(event), ACK_TIMEOUT_SECONDS, headers=headers
                )
    except NoRespondersError:
        raise PublishFailed(f"no stream took the messages (is {STREAM} there?)") from None
    except Exception as error:
        raise PublishFailed(str(error) or type(error).__name__) from error
    try:
        ack = _ack_decoder.decode(reply.data)
    except msgspec.DecodeError:
        raise PublishFailed("JetStream's acknowledgement could not be read") from None
    if ack.error is not None:
        # e.g. "wrong last msg ID": a message before it was refused or lost; nothing after
        # the refused one was stored.
        raise PublishFailed(
            f"JetStream refused the batch: {ack.error.description} ({ack.error.err_code})"
        )
    return max(after_sequence, ack.seq)


MAX_UNACKED = 4  # batches sent before the oldest one's ack must have come (memory and a bound)


class _Sent:
    """A sent batch: its last message's reply token, and what its ack vouches for."""

    __slots__ = ("ack", "deadline", "message_id", "position", "token")

    def __init__(self, token: str, message_id: str, position: int, deadline: float) -> None:
        self.token = token
        self.message_id = message_id
        self.position = position  # the store position its ack makes published
        self.deadline = deadline
        self.ack: _Ack | None = None


class OrderedPublisher:
    """`publish_in_order` for one leadership, without waiting for a batch's ack before the next.

    A batch's first message names the message it must follow: the stream's last acknowledged
    sequence when no ack is outstanding (as publish_in_order), else the last message id sent
    (the previous batch's last). The chain of expectations then runs across batches, so a batch
    refused or lost makes every later one refused too: nothing is ever stored out of order, and
    the failure surfaces as PublishFailed from the next `send` or `check`. The acks come on one
    inbox subscription of the leadership; `on_acked(position)` reports each batch stored, in order.
    """

    def __init__(
        self, bus: Bus, after_sequence: int, on_acked: Callable[[int], None] | None = None
    ) -> None:
        self._nc: Client = bus.nc
        self.sequence = after_sequence  # the stream's last message we know stored
        self._on_acked = on_acked
        self._sent: deque[_Sent] = deque()
        self._inbox = ""
        self._subscription: Subscription | None = None
        self._count = 0
        self._failure: PublishFailed | None = None
        self._drained: asyncio.Future[None] | None = None

    @property
    def unacked(self) -> int:
        """Batches sent whose ack has not come yet."""
        return len(self._sent)

    async def start(self) -> None:
        """Subscribes the leadership's ack inbox."""
        self._inbox = self._nc.new_inbox()
        self._subscription = await self._nc.subscribe(f"{self._inbox}.*", cb=self._acked)

    async def close(self) -> None:
        """Drops the ack inbox; acks still outstanding are forgotten (the stream is re-read)."""
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            with contextlib.suppress(Exception):  # a closed or broken connection: nothing to drop
                await subscription.unsubscribe()

    def check(self) -> None:
        """Raises PublishFailed if a batch was refused or its ack is overdue."""
        if self._failure is not None:
            raise self._failure
        if self._sent and self._sent[0].deadline < time.monotonic():
            self._failure = PublishFailed("JetStream did not acknowledge a batch in time")
            raise self._failure

    async def send(
        self,
        events: Sequence[BusEvent],
        position: int,
        traceparents: Sequence[str | None] | None = None,
    ) -> None:
        """Sends `events` after everything sent before; `position` is published once it is acked."""
        self.check()
        if len(self._sent) >= MAX_UNACKED:
            await self._oldest_acked()
        if not events:
            return
        previous: str | None = self._sent[-1].message_id if self._sent else None
        last = len(events) - 1
        self._count += 1
        token = str(self._count)
        try:
            for index, event in enumerate(events):
                headers: dict[str, str] = {Header.MSG_ID: message_id(event)}
                if traceparents is not None and (traceparent := traceparents[index]) is not None:
                    headers[TRACEPARENT] = traceparent
                if previous is None:
                    headers[Header.EXPECTED_LAST_SEQUENCE] = str(self.sequence)
                else:
                    headers[Header.EXPECTED_LAST_MSG_ID] = previous
                previous = headers[Header.MSG_ID]
                if index == last:
                    # Recorded before the publish: its ack can come before publish returns.
                    deadline = time.monotonic() + ACK_TIMEOUT_SECONDS
                    self._sent.append(_Sent(token, previous, position, deadline))
                    reply = f"{self._inbox}.{token}"
                else:
                    reply = ""
                await self._nc.publish(
                    subject_of(event), encode(event), reply=reply, headers=headers
                )
        except Exception as error:
            self._failure = PublishFailed(str(error) or type(error).__name__)
            raise self._failure from error

    async def _oldest_acked(self) -> None:
        oldest = self._sent[0]
        while self._sent and self._sent[0] is oldest:  # another batch's ack may come first
            self.check()
            self._drained = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self._drained, max(0.0, oldest.deadline - time.monotonic()))
            except TimeoutError:
                pass  # check() tells the overdue ack from one that came at the last moment
            finally:
                self._drained = None
        self.check()

    async def _acked(self, message: Msg) -> None:
        token = message.subject.rpartition(".")[2]
        if (message.headers or {}).get(Header.STATUS) == "503":  # the server's "no responders"
            ack = _Ack(
                error=_AckError(description=f"no stream took the messages (is {STREAM} there?)")
            )
        else:
            try:
                ack = _ack_decoder.decode(message.data)
            except msgspec.DecodeError:
                ack = _Ack(error=_AckError(description="an unreadable acknowledgement"))
        for sent in self._sent:
            if sent.token == token:
                sent.ack = ack
                break
        # In order: a batch counts as stored only once every batch before it is acked too.
        while self._sent and self._sent[0].ack is not None:
            sent = self._sent.popleft()
            assert sent.ack is not None
            if sent.ack.error is not None:
                self._failure = PublishFailed(
                    f"JetStream refused the batch: {sent.ack.error.description}"
                    f" ({sent.ack.error.err_code})"
                )
                break
            self.sequence = max(self.sequence, sent.ack.seq)
            if self._on_acked is not None:
                self._on_acked(sent.position)
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
