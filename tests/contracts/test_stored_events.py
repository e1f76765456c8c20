"""Events as stored today keep decoding, through the EventStore's own mapper, to the same values."""

from __future__ import annotations

import dataclasses
import json
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, StoredEvent

from agenttasks.application.store import open_event_store
from tests.contracts.catalogue import FIXTURES_DIR, class_version, event_classes
from tests.contracts.samples import CURRENT, UPCAST

FIXTURES = sorted(path.stem for path in FIXTURES_DIR.glob("*.json"))


@pytest.fixture(scope="module")
def mapper() -> Mapper[UUID]:
    return open_event_store().mapper


def stored(name: str) -> StoredEvent:
    fixture = json.loads((FIXTURES_DIR / f"{name}.json").read_text(encoding="utf8"))
    return StoredEvent(
        originator_id=UUID(fixture["originator_id"]),
        originator_version=fixture["originator_version"],
        topic=fixture["topic"],
        state=fixture["state"].encode("utf8"),
    )


def expected_fields(name: str) -> dict[str, Any]:
    return vars(CURRENT[name]) if name in CURRENT else UPCAST[name]


def assert_same_fields(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    assert set(actual) == set(expected), f"fields differ: {sorted(set(actual) ^ set(expected))}"
    for field, value in expected.items():
        got = actual[field]
        assert type(got) is type(value), (
            f"{field}: {type(got).__name__}, not {type(value).__name__}"
        )
        assert got == value, f"{field}: {got!r} != {value!r}"
        if hasattr(value, "utcoffset"):
            assert got.utcoffset() == value.utcoffset(), f"{field}: time zone changed"


def test_every_event_class_has_a_fixture_at_its_current_version() -> None:
    for cls in event_classes():
        prefix = f"{cls.__qualname__}.v{class_version(cls)}."
        assert any(name.startswith(prefix) for name in FIXTURES), (
            f"no fixture {prefix}*.json: add a sample to samples.CURRENT, run tests.contracts.tool"
        )


def test_every_sample_has_its_fixture_and_every_fixture_an_expectation() -> None:
    assert set(CURRENT) <= set(FIXTURES), "run `.venv/bin/python -m tests.contracts.tool`"
    assert set(FIXTURES) <= set(CURRENT) | set(UPCAST)
    assert not set(CURRENT) & set(UPCAST)


@pytest.mark.parametrize("name", FIXTURES)
def test_a_stored_fixture_decodes_field_by_field(mapper: Mapper[UUID], name: str) -> None:
    event: DomainEventProtocol[UUID] = mapper.to_domain_event(stored(name))
    assert type(event).__qualname__ == name.split(".v")[0]
    assert_same_fields(vars(event), expected_fields(name))


@pytest.mark.parametrize("name", sorted(CURRENT))
def test_todays_events_are_written_byte_for_byte_as_the_fixture(
    mapper: Mapper[UUID], name: str
) -> None:
    fixture = stored(name)
    assert mapper.to_stored_event(CURRENT[name]) == fixture
    assert mapper.to_stored_event(mapper.to_domain_event(fixture)) == fixture


@pytest.mark.parametrize("name", FIXTURES)
def test_a_stored_event_of_any_age_decodes_with_every_field_of_its_class(
    mapper: Mapper[UUID], name: str
) -> None:
    # What the bus publishes is vars(event): an old event missing a field would publish a
    # payload of another shape than a new one (an upcaster gives old events the new field).
    event = mapper.to_domain_event(stored(name))
    assert set(vars(event)) == {field.name for field in dataclasses.fields(type(event))}
