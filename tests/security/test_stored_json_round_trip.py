"""The event store reads back every event it accepts, whatever JSON a user put in it.

eventsourcing's JSON transcoder reads any object shaped `{"_type_": ..., "_data_": ...}` as one
of its tagged values; before transcoding.py a task config of that shape was stored and could
never be decoded again, which stopped the relay for every user. The properties here save
arbitrary JSON in every event field that carries user JSON and read it back.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agenttasks.application.group_commit import GroupCommitter
from agenttasks.application.store import EventStore, close, history, open_event_store, read_log
from agenttasks.application.tasks import Actor, NewTask, TaskCommands
from agenttasks.application.transcoding import MAX_NESTING, UnstorableValue
from agenttasks.domain.task import Task
from agenttasks.domain.template import Template
from agenttasks.settings import Settings
from tests.unit.test_group_commit import GatedStore
from tests.waiting import block_until

# Keys that mean something to a transcoder: the tag keys and the names of registered transcodings.
MAGIC = ["_type_", "_data_", "uuid_hex", "datetime_iso", "decimal_str", "agenttasks_object_pairs"]
keys = st.sampled_from(MAGIC) | st.text(max_size=12)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False)
    | st.sampled_from(MAGIC)
    | st.text()
)


def tag_shaped(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with exactly the two tag keys, naming a transcoding or not."""
    return st.builds(lambda t, d: {"_type_": t, "_data_": d}, scalars | inner, inner)


json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4) | tag_shaped(inner)
    ),
    max_leaves=30,
)
json_objects = st.dictionaries(keys, json_values, max_size=5)


def nested(depth: int) -> dict[str, Any]:
    """`depth` objects inside each other, a tag-shaped object innermost."""
    value: dict[str, Any] = {"_type_": "uuid_hex", "_data_": "not a uuid"}
    for _ in range(depth - 1):
        value = {"next": value}
    return value


def round_trip(store: EventStore, event: Any) -> Any:
    return store.mapper.to_domain_event(store.mapper.to_stored_event(event))


MEMORY = open_event_store()


# 200, not 400: three objects an example, and in 200 examples 169 hold a tag-shaped object and
# 67 one naming a registered transcoding (counted 2026-12-01): the risky shapes come early.
@settings(max_examples=200, deadline=None)
@given(config=json_objects, result=json_objects, note=json_objects)
def test_user_json_in_task_events_reads_back_equal(
    config: dict[str, Any], result: dict[str, Any], note: dict[str, Any]
) -> None:
    task = Task.create(title="t", task_type="custom", task_config=config, created_by="mallory")
    task.start(1, "w1")
    task.note(1, "source failed", note, error=True)
    task.complete(1, result, "done")
    events = task.collect_events()
    for event in events:
        assert vars(round_trip(MEMORY, event)) == vars(event)


@settings(max_examples=200, deadline=None)
@given(schema=json_objects, defaults=json_objects)
def test_user_json_in_template_events_reads_back_equal(
    schema: dict[str, Any], defaults: dict[str, Any]
) -> None:
    template = Template.create(
        name="n", description="", task_type="summary", default_config=defaults,
        config_schema=schema, shared=False, owner="mallory",
    )  # fmt: skip
    (event,) = template.collect_events()
    assert vars(round_trip(MEMORY, event)) == vars(event)


def test_nesting_at_the_limit_reads_back_and_one_level_more_is_refused_with_a_reason() -> None:
    # The event's own fields are level 0 and task_config is level 1.
    deepest = nested(MAX_NESTING - 1)
    task = Task.create(title="t", task_type="custom", task_config=deepest, created_by="m")
    (event,) = task.collect_events()
    assert round_trip(MEMORY, event).task_config == deepest

    too_deep = Task.create(
        title="t", task_type="custom", task_config={"x": nested(MAX_NESTING)}, created_by="m"
    )
    (event,) = too_deep.collect_events()
    with pytest.raises(UnstorableValue, match=f"more than {MAX_NESTING} levels"):
        MEMORY.mapper.to_stored_event(event)


def test_lone_surrogates_are_stored_as_replacement_characters() -> None:
    task = Task.create(
        title="t", task_type="custom", task_config={"text": "a\ud800b \ud83d\ude00"}, created_by="m"
    )
    (event,) = task.collect_events()
    assert round_trip(MEMORY, event).task_config == {"text": "a\ufffdb \U0001f600"}


def test_events_without_tag_shapes_are_stored_exactly_as_the_library_stores_them() -> None:
    # Everything stored before transcoding.py existed must keep decoding the same way.
    from eventsourcing.application import Application

    plain = Application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    task = Task.create(
        title="t", task_type="summary", task_config={"content": "x", "n": [1, {"a": None}]},
        created_by="m", template_id=uuid4(), template_version=3,
    )  # fmt: skip
    (event,) = task.collect_events()
    assert MEMORY.mapper.to_stored_event(event).state == plain.mapper.to_stored_event(event).state


def test_a_refused_value_fails_only_its_own_command_in_a_shared_transaction() -> None:
    store = GatedStore()
    committer = GroupCommitter(store)
    commands = TaskCommands(store, committer)
    alice = Actor("alice")
    poison = Task.create(
        title="bad", task_type="custom", task_config=nested(MAX_NESTING + 5), created_by="mallory"
    )

    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(commands.create, alice, NewTask("first", "summary", {"content": "x"}))
        block_until(lambda: store.saves == 1)  # the first save holds the gate
        bad = pool.submit(committer.save, poison)
        good = pool.submit(commands.create, alice, NewTask("good", "summary", {"content": "y"}))
        block_until(lambda: committer.queued == 2)  # both wait for the same next transaction
        store.gate.set()
        with pytest.raises(UnstorableValue):
            bad.result(10)
        good_id = good.result(10).task_id
        first.result(10)

    assert commands.get(alice, good_id).title == "good"
    assert [e.event.title for e in read_log(store)] == ["first", "good"]


@pytest.fixture(scope="module")
def postgres_store(postgres: Any) -> Iterator[EventStore]:
    from agenttasks.servers.postgres import create_database

    url = create_database(postgres.url, f"roundtrip_{uuid4().hex[:8]}")
    store = open_event_store(Settings(database_url=url).eventsourcing_env())
    yield store
    close(store)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(config=json_objects, result=json_objects)
def test_user_json_saved_to_postgres_reads_back_equal_through_every_reader(
    postgres_store: EventStore, config: dict[str, Any], result: dict[str, Any]
) -> None:
    store = postgres_store
    after = store.recorder.max_notification_id() or 0
    # The API checks a config's shape; the store must hold whatever reaches it all the same.
    task = Task.create(title="t", task_type="custom", task_config=config, created_by="mallory")
    task.start(1, "w1")
    task.complete(1, result, "done")
    store.save(task)

    stored = store.repository.get(task.id)
    assert (stored.task_config, stored.result_data) == (config, result)
    configs = [
        e.event.task_config for e in history(store, task.id) if e.event.originator_version == 1
    ]
    assert configs == [config]
    read = [e.event for e in read_log(store, after) if e.event.originator_id == task.id]
    assert [getattr(e, "result_data", None) for e in read][-1] == result
