"""The typed `data` structs of bus/event_data.py read what the relay publishes for each event.

Projections, the worker intake and the watchdog read event fields through these structs. Each
is tied here to the stored event class it describes: every struct field must be a field of that
class, and each sample event (samples.py), published the way the relay publishes it and decoded
the way a consumer decodes it, must read back field by field. Renaming `Task.Failed.error_kind`
fails here, not in production in three read models at once.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
import pytest

from agenttasks.application.bus_payloads import BusEventMapper, TaskFacts, TemplateEventMapper
from agenttasks.bus import event_data
from agenttasks.bus.event_data import EventData, data_of
from agenttasks.bus.messages import decode, encode
from agenttasks.domain.task import Task
from agenttasks.domain.template import Template
from tests.contracts.samples import CURRENT

DESCRIBES: dict[type[EventData], type[Any]] = {
    event_data.TaskCreated: Task.Created,
    event_data.TaskStarted: Task.Started,
    event_data.TaskCompleted: Task.Completed,
    event_data.TaskFailed: Task.Failed,
    event_data.TaskRetried: Task.Retried,
    event_data.TaskModelCalled: Task.ModelCalled,
    event_data.TemplateCreated: Template.Created,
    event_data.TemplateRevised: Template.Revised,
}

mapper = BusEventMapper(
    lambda _: TaskFacts("alice", "summary", "high"), TemplateEventMapper(lambda _: "alice")
)


def test_every_struct_in_the_module_is_tied_to_an_event_class() -> None:
    structs = {
        value
        for value in vars(event_data).values()
        if isinstance(value, type) and issubclass(value, EventData) and value is not EventData
    }
    assert structs == set(DESCRIBES)


@pytest.mark.parametrize("struct", DESCRIBES, ids=lambda s: s.__name__)
def test_every_field_of_a_struct_is_a_field_of_its_event(struct: type[EventData]) -> None:
    event_fields = {f.name for f in dataclasses.fields(DESCRIBES[struct])}
    assert set(struct.__struct_fields__) <= event_fields


def _samples() -> list[tuple[str, Any, type[EventData]]]:
    by_class = {cls: struct for struct, cls in DESCRIBES.items()}
    return [
        (name, event, by_class[type(event)])
        for name, event in CURRENT.items()
        if type(event) in by_class
    ]


@pytest.mark.parametrize(("name", "event", "struct"), _samples(), ids=lambda v: str(v)[:40])
def test_a_published_event_reads_back_through_its_struct(
    name: str, event: Any, struct: type[EventData]
) -> None:
    published = decode(encode(mapper.map(event, 7)))  # as the relay sends it, as a reader reads it
    read = data_of(published, struct)  # type: ignore[arg-type]
    for field in struct.__struct_fields__:
        expected = getattr(event, field)
        if isinstance(expected, UUID):
            expected = str(expected)
        got = getattr(read, field)
        if isinstance(expected, datetime):
            assert got == expected
        else:
            assert msgspec.to_builtins(got) == msgspec.to_builtins(expected), (name, field)


def test_every_described_class_has_a_sample() -> None:
    sampled = {type(event) for event in CURRENT.values()}
    assert set(DESCRIBES.values()) <= sampled
