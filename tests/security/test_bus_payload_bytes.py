"""The relay's mapping (RELAYMAP) publishes the very bytes the old path did, for every event kind.

Bus payloads are a contract: every consumer and every replay must see what they saw before the
mapper encoded each payload once (looking for NUL in the final bytes, the bytes then reused by
the publish) instead of encoding the data for the look and the payload again to publish. The old
path is kept here verbatim as the reference; the samples of every stored event class, and
hypothesis' variations of their fields (any text, NUL anywhere, nested user JSON, big results,
streamed pieces), must give equal structs (what replay hands the read models) and equal bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any
from uuid import UUID

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agenttasks.application.bus_payloads import (
    BusEventMapper,
    TaskFacts,
    TemplateEventMapper,
    budget_payload,
    purged_payload,
)
from agenttasks.application.store import open_event_store
from agenttasks.application.task_configs import contains_nul
from agenttasks.bus.messages import BusEvent, TaskEvent, TemplateEvent, encode
from agenttasks.domain.budget import BudgetAlert
from agenttasks.domain.deletion import TaskDeletion
from agenttasks.domain.task import Task
from agenttasks.domain.template import TEMPLATE_KINDS
from agenttasks.domain.updates import KINDS, describe
from tests.contracts.samples import CURRENT

_ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})


# --- the old path (HEAD d1e43cf), kept as it was --------------------------------------------


def _old_without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_old_without_nul(k): _old_without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_old_without_nul(item) for item in value]
    return value


def _old_fields(event: Any) -> dict[str, Any]:
    fields = {k: v for k, v in vars(event).items() if k not in _ENVELOPE}
    builtins: dict[str, Any] = msgspec.to_builtins(fields)
    if b"\\u0000" in msgspec.json.encode(builtins) and contains_nul(builtins):
        cleaned: dict[str, Any] = _old_without_nul(builtins)
        return cleaned
    return builtins


def _old_map(event: Any, position: int, facts: TaskFacts, owner: str) -> BusEvent | None:
    if isinstance(event, TaskDeletion.Created):
        return purged_payload(event, position)
    if isinstance(event, BudgetAlert.Created):
        return budget_payload(event, position)
    if type(event) in TEMPLATE_KINDS:
        return TemplateEvent(
            position=position,
            template_id=str(event.originator_id),
            type=TEMPLATE_KINDS[type(event)],
            version=event.originator_version,
            timestamp=event.timestamp,
            user=event.owner if hasattr(event, "owner") else owner,
            data=_old_fields(event),
        )
    if type(event) not in KINDS:
        return None
    if isinstance(event, Task.Created):
        facts = TaskFacts(event.created_by, event.task_type, event.priority)
    update = describe(event)
    data = _old_fields(event)
    return TaskEvent(
        position=position,
        task_id=str(event.originator_id),
        type=update.kind,
        version=event.originator_version,
        timestamp=event.timestamp,
        user=facts.user,
        task_type=facts.task_type,
        priority=facts.priority,
        update_type=update.update_type,
        status=update.status,
        progress=update.progress,
        message=_old_without_nul(update.message),
        data=data,
        partial=data.get("partial") if isinstance(event, Task.ResultRecorded) else None,
    )


# --- the comparison -------------------------------------------------------------------------

FACTS = TaskFacts("al\x00ice", "summary", "high")  # NUL outside the data: never cleaned
OWNER = "owner\x00"


def _new_mapper() -> BusEventMapper:
    return BusEventMapper(lambda _id: FACTS, TemplateEventMapper(lambda _id: OWNER))


def _stored_and_read(event: Any) -> Any:
    """`event` as the relay sees it: stored by the EventStore's mapper and read back."""
    mapper = open_event_store().mapper
    return mapper.to_domain_event(mapper.to_stored_event(event))


def assert_same(event: Any, position: int = 41) -> None:
    """The new mapper gives the old struct and the old bytes, and `encode` its true bytes."""
    old = _old_map(event, position, FACTS, OWNER)
    new = _new_mapper().map(event, position)
    assert new == old
    if old is None:
        return
    assert new is not None
    assert encode(new) == msgspec.json.encode(old)
    assert msgspec.json.encode(new) == encode(new)  # the kept bytes are the payload's own


@pytest.mark.parametrize("name", sorted(CURRENT))
def test_every_sample_maps_to_the_old_bytes(name: str) -> None:
    assert_same(_stored_and_read(CURRENT[name]))
    assert_same(CURRENT[name])


def _sample(kind: type[Any]) -> Any:
    return next(event for event in CURRENT.values() if type(event) is kind)


def test_nul_in_data_message_and_partial_is_cleaned_as_before() -> None:
    piece = {"offset": 3, "text": "a\x00b"}
    streamed = dataclasses.replace(
        _sample(Task.ResultRecorded), data={"partial": piece}, partial=piece, message="m\x00"
    )
    new = _new_mapper().map(streamed, 5)
    assert isinstance(new, TaskEvent)
    assert new.partial == {"offset": 3, "text": "a\ufffdb"}
    assert new.message == "m\ufffd"
    assert not contains_nul(new.data)
    assert_same(streamed)
    assert_same(dataclasses.replace(_sample(Task.Created), title="t\x00", created_by="u\x00"))


def test_a_big_result_with_a_nul_at_its_end() -> None:
    big = {"rows": [{"n": i, "text": "x" * 50} for i in range(4000)], "last": "end\x00"}
    completed = dataclasses.replace(_sample(Task.Completed), result_data=big)
    assert_same(completed)
    assert_same(dataclasses.replace(completed, result_data={**big, "last": "end"}))


_text = st.text(max_size=12) | st.text(alphabet="a\x00\\u0é", max_size=8)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


def _variation(value: Any) -> st.SearchStrategy[Any]:
    """Values of the kind a field holds (as stored events hold them)."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, str):
        return _text
    if isinstance(value, dict):
        return st.dictionaries(_text, _json, max_size=5)
    if isinstance(value, list):
        return st.lists(_json, max_size=4)
    return st.just(value)  # ids, numbers, times: kept (their encoding is msgspec's either way)


def _varied(event: Any) -> st.SearchStrategy[Any]:
    own = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    changes = {name: _variation(v) for name, v in own.items() if name not in _ENVELOPE}
    return st.fixed_dictionaries(changes).map(lambda c: dataclasses.replace(event, **c))


_SAMPLES = [event for _, event in sorted(CURRENT.items())]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_SAMPLES).flatmap(_varied), st.integers(1, 2**40))
def test_varied_events_map_to_the_old_bytes(event: Any, position: int) -> None:
    assert_same(event, position)


def test_the_facts_cache_gives_the_same_task_id_text() -> None:
    mapper = _new_mapper()
    created = _sample(Task.Created)
    started = _sample(Task.Started)
    first = mapper.map(created, 1)
    later: Callable[[], BusEvent | None] = lambda: mapper.map(started, 2)  # noqa: E731
    assert isinstance(first, TaskEvent)
    assert [getattr(later(), "task_id", None) for _ in range(2)] == [str(started.originator_id)] * 2
    assert first.task_id == str(UUID(str(created.originator_id)))
