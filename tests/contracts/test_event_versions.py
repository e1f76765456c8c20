"""Old stored events read in today's shape: upcasters, and defaults for fields added later."""

from __future__ import annotations

import dataclasses
import json
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import Mapper, StoredEvent

from agenttasks.application.bus_payloads import event_fields
from agenttasks.application.store import open_event_store
from agenttasks.domain.task import Task
from tests.contracts.catalogue import class_version
from tests.contracts.samples import CURRENT
from tests.contracts.test_stored_events import stored


@pytest.fixture(scope="module")
def mapper() -> Mapper[UUID]:
    return open_event_store().mapper


def test_a_result_stored_as_v1_reads_as_v2_with_its_streamed_piece_lifted_out(
    mapper: Mapper[UUID],
) -> None:
    assert '"class_version"' not in stored("Task.ResultRecorded.v1.streamed").state.decode()
    event: Any = mapper.to_domain_event(stored("Task.ResultRecorded.v1.streamed"))
    assert event.partial == {"offset": 0, "text": "The week in "}
    assert event.data == {"partial": {"offset": 0, "text": "The week in "}}


def test_a_result_stored_before_partial_existed_reads_the_default(mapper: Mapper[UUID]) -> None:
    event: Any = mapper.to_domain_event(stored("Task.ResultRecorded.v1.plain"))
    assert event.partial is None
    assert event.data == {"rows": 10}


def test_an_old_and_a_new_result_publish_the_same_shape_with_the_piece_still_in_data(
    mapper: Mapper[UUID],
) -> None:
    # Subscribers read data.data.partial today (the dashboard among them): it must stay.
    old = event_fields(mapper.to_domain_event(stored("Task.ResultRecorded.v1.streamed")))
    new = event_fields(mapper.to_domain_event(stored("Task.ResultRecorded.v2.streamed")))
    assert set(old) == set(new) == {"attempt", "data", "message", "progress", "partial", "trace"}
    assert old["data"]["partial"] == old["partial"]
    assert new["data"]["partial"] == new["partial"]


def test_recording_a_result_fills_partial_from_the_streamed_piece() -> None:
    task = Task.create(title="t", task_type="summary", task_config={}, created_by="alice")
    task.start(1, "w")
    task.record_result(1, {"partial": {"offset": 0, "text": "Hel"}})
    task.record_result(1, {"rows": 3})
    streamed, plain = task.collect_events()[-2:]
    assert isinstance(streamed, Task.ResultRecorded)
    assert isinstance(plain, Task.ResultRecorded)
    assert streamed.partial == {"offset": 0, "text": "Hel"}
    assert streamed.data == {"partial": {"offset": 0, "text": "Hel"}}
    assert plain.partial is None


def defaulted_fields() -> list[tuple[str, dataclasses.Field[Any]]]:
    return [
        (name, field)
        for name, event in CURRENT.items()
        for field in dataclasses.fields(type(event))
        if field.default is not dataclasses.MISSING
        or field.default_factory is not dataclasses.MISSING
    ]


def test_every_field_with_a_default_reads_it_when_the_stored_event_lacks_it(
    mapper: Mapper[UUID],
) -> None:
    # docs/events.md promises "new fields get defaults": an event written before the field
    # existed must decode. The mapper never runs __init__, so the default must be on the class.
    cases = defaulted_fields()
    assert cases, "no event field has a default yet: this test would check nothing"
    for name, field in cases:
        assert field.default_factory is dataclasses.MISSING, (
            f"{name}.{field.name}: a default_factory is not on the class; old events would "
            f"lack the field (use a plain default such as None)"
        )
        fixture = stored(name)
        state = json.loads(fixture.state)
        del state[field.name]
        state["class_version"] = class_version(type(CURRENT[name]))  # no upcaster runs
        older = StoredEvent(
            fixture.originator_id,
            fixture.originator_version,
            fixture.topic,
            json.dumps(state).encode("utf8"),
        )
        event = mapper.to_domain_event(older)
        assert getattr(event, field.name) == field.default, f"{name}.{field.name}"
