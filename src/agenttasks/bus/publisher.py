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
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.api import Header

from agenttasks.bus.messages import STREAM, BusEvent, encode, message_id, subject_of

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
