"""The flat fields added for the guide's clients (issue 14, item 1), on the bus payload: a
result's `partial` and `progress_percentage`, additive, so older payloads still decode."""

from __future__ import annotations

from uuid import uuid4

from agenttasks.application.bus_payloads import BusEventMapper, TaskFacts
from agenttasks.bus.messages import TaskEvent, decode, encode
from agenttasks.domain.task import Task

FACTS = TaskFacts("alice", "summary", "normal")


def running_task() -> Task:
    task = Task.create(
        task_id=uuid4(),
        title="t",
        task_type="summary",
        task_config={"content": "x"},
        priority="normal",
        created_by="alice",
    )
    task.start(1, "w1")
    return task


def test_a_streamed_result_carries_its_piece_flat_and_nested() -> None:
    task = running_task()
    task.report_progress(1, 40, "reading")
    task.record_result(1, {"partial": {"offset": 0, "text": "Hello"}})
    mapper = BusEventMapper(lambda _: FACTS)
    payloads = [mapper.map(event, n) for n, event in enumerate(task.collect_events(), 1)]
    result = payloads[-1]
    assert isinstance(result, TaskEvent)
    assert result.partial == {"offset": 0, "text": "Hello"}
    assert result.data["data"]["partial"] == result.partial  # where it always was
    assert result.progress_percentage == result.progress == 40
    assert all(isinstance(p, TaskEvent) and p.partial is None for p in payloads[:-1])


def test_a_result_that_is_not_streamed_text_has_no_partial() -> None:
    task = running_task()
    task.record_result(1, {"rows": 3})
    mapper = BusEventMapper(lambda _: FACTS)
    *_, result = (mapper.map(event, n) for n, event in enumerate(task.collect_events(), 1))
    assert isinstance(result, TaskEvent)
    assert result.partial is None


def test_a_payload_published_before_the_fields_decodes_with_them_filled_in() -> None:
    old = (
        b'{"stream":"task","position":7,"task_id":"t","type":"progress","version":3,'
        b'"timestamp":"2026-11-30T10:00:00Z","user":"alice","task_type":"summary",'
        b'"priority":"normal","update_type":"progress","status":"running","progress":55,'
        b'"message":"m","data":{}}'
    )
    event = decode(old)
    assert isinstance(event, TaskEvent)
    assert (event.progress_percentage, event.partial) == (55, None)
    assert decode(encode(event)) == event
