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

The messages before the last are framed here (`_frames`: the very bytes nats-py's `publish` would
queue, the same headers in the same order) and handed to the client's outbound buffer in one
piece, ahead of the last one's request: nats-py's `publish` re-validated our constant header keys
with a regex, stripped and re-encoded each value and queued each message on its own, a fifth
of the relay's CPU per event in a catch-up batch (docs/performance.md, RELAYCPU).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from nats.aio.client import Client, _validate_subject
from nats.errors import (
    ConnectionClosedError,
    ConnectionDrainingError,
    MaxPayloadError,
    NoRespondersError,
)
from nats.js import JetStreamContext
from nats.js.api import Header

from agenttasks.bus.messages import STREAM, BusEvent, encode, message_id, subject_of

ACK_TIMEOUT_SECONDS = 5.0
# W3C trace context on each message (docs/operations.md, "Logs and traces"): consumers continue
# the trace of the command that stored the event.
TRACEPARENT = "traceparent"
# nats-py trims a header value and turns CR/LF into spaces: the same here, so bytes stay equal.
_NEWLINES = str.maketrans({"\r": " ", "\n": " "})


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
    last = len(events) - 1
    try:
        if last:
            await _publish_all_but_last(nc, events, after_sequence, traceparents)
        headers = _headers(events, last, after_sequence, traceparents)
        reply = await nc.request(
            subject_of(events[last]), encode(events[last]), ACK_TIMEOUT_SECONDS, headers=headers
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


async def _publish_all_but_last(
    nc: Client,
    events: Sequence[BusEvent],
    after_sequence: int,
    traceparents: Sequence[str | None] | None,
) -> None:
    """Queues every message but the last, in order, as one write into the client's buffer."""
    if nc.is_closed:
        raise ConnectionClosedError
    if nc.is_draining_pubs:
        raise ConnectionDrainingError
    frames, sizes = _frames(nc, events, after_sequence, traceparents)
    if not nc.is_connected:
        # Reconnecting: nats-py's publish decides whether its reconnect buffer may take them.
        for index in range(len(frames)):
            await nc.publish(
                subject_of(events[index]),
                encode(events[index]),
                headers=_headers(events, index, after_sequence, traceparents),
            )
        return
    # The client's own queue and flusher (nats-py 2.16, pinned): what `publish` does last.
    nc.stats["out_msgs"] += len(frames)
    nc.stats["out_bytes"] += sizes
    await nc._send_command(b"".join(frames))


def _frames(
    nc: Client,
    events: Sequence[BusEvent],
    after_sequence: int,
    traceparents: Sequence[str | None] | None,
) -> tuple[list[bytes], int]:
    """The HPUB commands of all but the last event, byte for byte as nats-py frames them."""
    validate = not getattr(nc, "_skip_subject_validation", False)
    limit = nc.max_payload
    frames: list[bytes] = []
    sizes = 0
    expectation = f"Nats-Expected-Last-Sequence: {after_sequence}"
    for index in range(len(events) - 1):
        event = events[index]
        subject = subject_of(event)
        if validate:
            _validate_subject(subject)
        data = encode(event)
        if len(data) > limit:
            raise MaxPayloadError
        msg_id = message_id(event)
        trace = ""
        if traceparents is not None and (traceparent := traceparents[index]) is not None:
            trace = f"{TRACEPARENT}: {traceparent.strip().translate(_NEWLINES)}\r\n"
        header = f"NATS/1.0\r\nNats-Msg-Id: {msg_id}\r\n{trace}{expectation}\r\n\r\n".encode()
        head = f"HPUB {subject}  {len(header)} {len(header) + len(data)}\r\n".encode()
        frames.append(b"".join((head, header, data, b"\r\n")))
        sizes += len(data)
        expectation = f"Nats-Expected-Last-Msg-Id: {msg_id}"
    return frames, sizes


def _headers(
    events: Sequence[BusEvent],
    index: int,
    after_sequence: int,
    traceparents: Sequence[str | None] | None,
) -> dict[str, str]:
    """The headers of message `index` (for nats-py's `publish`)."""
    headers: dict[str, str] = {Header.MSG_ID: message_id(events[index])}
    if traceparents is not None and (traceparent := traceparents[index]) is not None:
        headers[TRACEPARENT] = traceparent
    if index == 0:
        headers[Header.EXPECTED_LAST_SEQUENCE] = str(after_sequence)
    else:
        headers[Header.EXPECTED_LAST_MSG_ID] = message_id(events[index - 1])
    return headers
