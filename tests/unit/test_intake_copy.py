"""The worker's copy of a task from its created message, against eventsourcing's own construction.

`task_from_created` builds the Task without the library's `Created(...)` + `mutate` (half its
CPU): for every created message it must give the same object, field for field, in the same
order and of the same types, as the library builds from the same message (hypothesis), and as
the stored sample of tests/contracts decodes to.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any
from uuid import UUID

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agenttasks.application.bus_payloads import BusEventMapper
from agenttasks.bus.consumers import Delivery
from agenttasks.bus.messages import encode
from agenttasks.domain.rules import PRIORITIES, TASK_TYPES
from agenttasks.domain.task import Task
from agenttasks.workers import intake
from agenttasks.workers.intake import job_from, task_from_created
from tests.contracts.samples import CURRENT

TOPIC = "agenttasks.domain.task:Task"

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
CREATED = st.builds(
    Task.Created,
    originator_id=st.uuids(),
    originator_version=st.just(1),
    timestamp=st.datetimes(timezones=st.just(UTC)),
    originator_topic=st.just(TOPIC),
    title=st.text(max_size=20),
    task_type=st.sampled_from(TASK_TYPES),
    task_config=st.dictionaries(st.text(max_size=6), _JSON, max_size=4),
    priority=st.sampled_from(PRIORITIES),
    created_by=st.text(max_size=10),
    template_id=st.none() | st.uuids(),
    template_version=st.none() | st.integers(min_value=1, max_value=10**6),
    max_retries=st.integers(min_value=0, max_value=10),
    timeout_seconds=st.integers(min_value=1, max_value=86_400),
    webhook_url=st.none() | st.text(max_size=20),
    trace=st.none() | st.text(max_size=55),
)


def _no_facts(_: UUID) -> Any:
    raise AssertionError("a Created carries its own facts")


def _job(created: Task.Created) -> Any:
    payload = BusEventMapper(_no_facts).map(created, 7)
    assert payload is not None
    return job_from(Delivery(encode(payload), 1, None))


def _fields(task: Task) -> list[tuple[str, type, Any]]:
    return [(name, type(value), value) for name, value in vars(task).items()]


def test_the_direct_build_is_in_use() -> None:
    # If this fails the copy still works (by the library), but the worker lost its cheap path.
    assert intake._direct_is_the_library()
    assert intake._DIRECT


@settings(max_examples=100, deadline=None)
@given(CREATED)
def test_the_copy_is_the_librarys_construction_field_for_field(created: Task.Created) -> None:
    job = _job(created)
    ours = task_from_created(job)
    if intake._REPLACEMENT in job.delivery.data:  # a NUL became U+FFFD: not an exact copy
        assert ours is None
        return
    fields = msgspec.convert(job.created.data, intake._CreatedFields, strict=False)
    theirs = intake._by_the_library(job.task_id, job.created.timestamp, fields)
    assert ours is not None
    assert theirs is not None
    assert _fields(ours) == _fields(theirs)
    assert ours.collect_events() == []  # like the library's: the Created is not pending


@pytest.mark.parametrize("name", [n for n in CURRENT if n.startswith("Task.Created.")])
def test_the_copy_of_each_stored_sample_is_what_its_event_builds(name: str) -> None:
    created = CURRENT[name]
    ours = task_from_created(_job(created))
    assert ours is not None
    assert _fields(ours) == _fields(created.mutate(None))


def test_without_the_direct_build_the_library_builds_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    created = CURRENT["Task.Created.v3.with_webhook"]
    direct = task_from_created(_job(created))
    monkeypatch.setattr(intake, "_DIRECT", False)
    by_library = task_from_created(_job(created))
    assert direct is not None
    assert by_library is not None
    assert _fields(direct) == _fields(by_library)
