"""Server-sent events, without I/O: a byte-stream parser and the state of following one task.

The sync and async clients do the reading and the reconnecting; what a message means, where
to resume and when a task's stream is really over is decided here, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

import msgspec

from agenttasks.client.models import FINISHED, Followed, Resync, StoredEvent, TaskEvent

_event = msgspec.json.Decoder(TaskEvent)
_resync = msgspec.json.Decoder(Resync)


class StreamError(Exception):
    """The stream sent something the client will not take: an oversized or unreadable message."""


@dataclass
class Message:
    """One dispatched SSE message."""

    id: str | None
    event: str
    data: str


@dataclass
class SseParser:
    """Turns chunks of an event stream into messages; refuses a message over `max_bytes`."""

    max_bytes: int
    _buffer: bytearray = field(default_factory=bytearray)
    _data: list[str] = field(default_factory=list)
    _size: int = 0
    _event: str = ""
    _id: str | None = None

    def feed(self, chunk: bytes) -> list[Message]:
        """The messages completed by `chunk`."""
        self._buffer += chunk
        messages: list[Message] = []
        while True:
            line = self._next_line()
            if line is None:
                break
            message = self._line(line.decode("utf-8", errors="replace"), len(line))
            if message is not None:
                messages.append(message)
        if len(self._buffer) + self._size > self.max_bytes:
            raise StreamError(f"a stream message is larger than {self.max_bytes} bytes")
        return messages

    def _next_line(self) -> bytes | None:
        # Lines end with CRLF, LF or CR; a CR at the end of the buffer may be half a CRLF.
        buffer = self._buffer
        lf, cr = buffer.find(b"\n"), buffer.find(b"\r")
        if lf == -1 and cr == -1:
            return None
        if cr == -1 or (lf != -1 and lf < cr):
            end, skip = lf, 1
        elif cr + 1 == len(buffer):
            return None
        else:
            end, skip = cr, 2 if buffer[cr + 1] == 0x0A else 1
        line = bytes(buffer[:end])
        del buffer[: end + skip]
        return line

    def _line(self, line: str, size: int) -> Message | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: the server's keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._size += size
            if self._size > self.max_bytes:
                raise StreamError(f"a stream message is larger than {self.max_bytes} bytes")
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self) -> Message | None:
        data, event = self._data, self._event
        self._data, self._event, self._size = [], "", 0
        if not data:
            return None
        return Message(self._id, event, "\n".join(data))


@dataclass
class FollowState:
    """Where a follow of one task stands: the resume position, and what each message means."""

    task_id: UUID
    last: int | None = None

    @property
    def path(self) -> str:
        """The task's stream."""
        return f"/api/v1/utils/tasks/{self.task_id}/stream/"

    def headers(self) -> dict[str, str]:
        """Resume after the last position passed on (the whole history the first time)."""
        headers = {"Accept": "text/event-stream"}
        if self.last is not None:
            headers["Last-Event-ID"] = str(self.last)
        return headers

    def take(self, message: Message) -> Followed | None:
        """The update or resync `message` carries; None for anything else or a repeat."""
        if message.event not in ("", "message", "resync"):
            return None  # a message kind this client does not know: not an update
        try:
            item: Followed = (
                _resync.decode(message.data) if message.event == "resync"
                else _event.decode(message.data)
            )  # fmt: skip
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            raise StreamError("the stream sent an update this client cannot read") from error
        if self.last is not None and item.position <= self.last:
            return None  # never pass an update on twice, whatever the server does
        self.last = item.position
        return item

    @staticmethod
    def may_end(item: Followed) -> bool:
        """Whether the task may be over after `item` (ask the store with `ended`)."""
        return isinstance(item, Resync) or item.status in FINISHED


def ended(events: Sequence[StoredEvent], position: int) -> bool:
    """Whether the task's stored history ends, finished, at or before `position`.

    Asked of the event store, not a read model: it is never behind the stream. A failure that
    is retried automatically stores its retry in the same transaction, so a later event is
    there to see.
    """
    if any(event.position > position for event in events):
        return False
    before = [event for event in events if event.position <= position]
    return bool(before) and before[-1].type in FINISHED


def backoff(failures: int, cap: float) -> float:
    """Seconds to wait before reconnect number `failures` (0: at once)."""
    return 0.0 if failures <= 0 else min(cap, 0.1 * 2 ** (failures - 1))
