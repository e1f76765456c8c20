"""The relay's own framing of a batch is byte for byte what nats-py's publish would queue."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from nats.aio.client import Client
from nats.errors import BadSubjectError

from agenttasks.bus.messages import BusEvent, SkippedEvent, TaskEvent, encode, subject_of
from agenttasks.bus.publisher import _frames, _headers


def task_event(position: int, kind: str = "created", task_type: str = "summary") -> TaskEvent:
    return TaskEvent(
        position=position,
        task_id=str(uuid4()),
        type=kind,
        version=1,
        timestamp=datetime.now(UTC),
        user="alice",
        task_type=task_type,
        priority="normal",
        update_type="status",
        status="pending",
        progress=0,
        message="é ünïcode",
        data={"k": [1, "two"]},
    )


async def queued_by_nats_py(
    events: list[BusEvent], after: int, traces: list[str | None] | None
) -> list[bytes]:
    """What nats-py's own publish path puts in its outbound buffer (no connection needed)."""
    nc = Client()
    for index, event in enumerate(events[:-1]):
        data = encode(event)
        headers = _headers(events, index, after, traces)
        await nc._send_publish(subject_of(event), "", data, len(data), headers)
    return list(nc._pending)


@pytest.mark.parametrize(
    "traces",
    [
        None,
        [None, None, None, None],
        ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", None, " 00-x\r\n-y ", None],
    ],
)
async def test_frames_equal_nats_py_publish(traces: list[str | None] | None) -> None:
    events: list[BusEvent] = [
        task_event(3),
        task_event(4, "started"),
        SkippedEvent(position=7, originator_id="x", reason="undecodable"),
        task_event(9, "cancelled"),
    ]
    frames, sizes = _frames(Client(), events, 41, traces)
    assert frames == await queued_by_nats_py(events, 41, traces)
    assert sizes == sum(len(encode(e)) for e in events[:-1])


def test_a_bad_subject_is_refused_as_nats_py_refuses_it() -> None:
    events: list[BusEvent] = [task_event(1, task_type="sum mary"), task_event(2)]
    with pytest.raises(BadSubjectError):
        _frames(Client(), events, 0, None)
