"""Publishing stored events to JetStream in order, each exactly once in the stream.

Every message carries `Nats-Msg-Id` (JetStream drops a repeat within the duplicate window) and
the id of the message it must follow (`Nats-Expected-Last-Msg-Id`; `Nats-Expected-Last-Sequence`
for the first one). Messages are pipelined, so a connection that breaks mid-batch could lose one
message while later ones get through on reconnect; the expectation makes the server refuse
those later ones instead of storing them out of order. The caller then re-reads the stream's last
message and resumes after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec
from nats.js import JetStreamContext
from nats.js.api import Header, PubAck

from agenttasks.bus.messages import STREAM, BusEvent, encode, message_id, subject_of

ACK_TIMEOUT_SECONDS = 5.0
# W3C trace context on each message (docs/operations.md, "Logs and traces"): consumers continue
# the trace of the command that stored the event.
TRACEPARENT = "traceparent"


class PublishFailed(RuntimeError):
    """A batch was not (entirely) stored; re-read `last_published` and resume from there."""


class _Position(msgspec.Struct):
    position: int


async def last_published(js: JetStreamContext) -> tuple[int, int]:
    """(position of the last event in the stream, its stream sequence); (0, 0) when empty."""
    info = await js.stream_info(STREAM)
    last_sequence = info.state.last_seq
    if not info.state.messages or not last_sequence:
        return 0, last_sequence
    message = await js.get_msg(STREAM, seq=last_sequence)
    return msgspec.json.decode(message.data or b"{}", type=_Position).position, last_sequence


async def publish_in_order(
    js: JetStreamContext,
    events: Sequence[BusEvent],
    after_sequence: int,
    traceparents: Sequence[str | None] | None = None,
) -> int:
    """Publishes `events` after the stream's message `after_sequence`; returns the new last one.

    `traceparents[i]`, when given and not None, goes with `events[i]` as its `traceparent` header.
    """
    futures: list[asyncio.Future[PubAck]] = []
    previous: str | None = None
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
            futures.append(
                await js.publish_async(subject_of(event), encode(event), headers=headers)
            )
        acks = await asyncio.wait_for(asyncio.gather(*futures), ACK_TIMEOUT_SECONDS)
    except Exception as error:
        for future in futures:
            future.cancel()  # releases its slot in the client's pending-publish window
        raise PublishFailed(str(error) or type(error).__name__) from error
    sequence = after_sequence
    for ack in acks:
        sequence = max(sequence, ack.seq or 0)
    return sequence
