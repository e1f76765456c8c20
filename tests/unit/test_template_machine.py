"""The Template aggregate under any sequence of commands: its rules hold and replay is exact."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agenttasks.application.store import open_event_store
from agenttasks.domain.rules import TASK_TYPES, RuleViolation
from agenttasks.domain.template import (
    DEFINITION_FIELDS,
    MAX_DESCRIPTION_CHARS,
    MAX_NAME_CHARS,
    TEMPLATE_KINDS,
    Template,
)

MAPPER = open_event_store().mapper

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["", "casual", "é 🗞"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["topic", "tone", "length"]), inner, max_size=3)
    ),
    max_leaves=6,
)
configs = st.dictionaries(st.sampled_from(["topic", "tone", "length"]), json_values, max_size=3)
schemas = st.sampled_from([{}, {"type": "object"}, {"type": "object", "required": ["topic"]}])
names = st.sampled_from(["Weekly post", "  Weekly post  ", "Digest", "", "   ", "n" * 201])
descriptions = st.sampled_from(["", "A casual post", "d" * (MAX_DESCRIPTION_CHARS + 1), "nul\x00"])
task_types = st.sampled_from([*TASK_TYPES, "poetry"])
changes = st.fixed_dictionaries(
    {},
    optional={
        "name": names,
        "description": descriptions,
        "task_type": task_types,
        "default_config": configs,
        "config_schema": schemas,
        "shared": st.booleans(),
        "colour": st.just("blue"),  # no such field: always refused
    },
)


def new_template() -> Template:
    return Template.create(
        name="Weekly post", task_type="content_generation", owner="alice", shared=False
    )


def replayed(events: list[Any]) -> Template:
    template = None
    for event in events:
        template = event.mutate(template)
    assert isinstance(template, Template)
    return template


def state_of(template: Template) -> dict[str, Any]:
    return {k: v for k, v in vars(template).items() if k != "_pending_events"}


def valid_definition(definition: dict[str, Any]) -> bool:
    name = definition["name"]
    return (
        bool(name)
        and len(name) <= MAX_NAME_CHARS
        and len(definition["description"]) <= MAX_DESCRIPTION_CHARS
        and "\x00" not in name + definition["description"]
        and definition["task_type"] in TASK_TYPES
    )


class TemplateLifecycle(RuleBasedStateMachine):
    """Random command sequences; a refused command must leave no trace."""

    def __init__(self) -> None:
        super().__init__()
        self.template = new_template()
        self.events: list[Any] = list(self.template.collect_events())
        self.ever_archived = False

    def run(self, command: Any) -> Any:
        """Runs `command`; None when refused (and then nothing changed), else its result."""
        before = state_of(self.template)
        try:
            result = command()
        except RuleViolation:
            assert state_of(self.template) == before
            assert self.template.collect_events() == []
            return None
        self.events.extend(self.template.collect_events())
        return result if result is not None else True

    @rule(changed=changes, by=st.sampled_from(["alice", "root"]))
    def revise(self, changed: dict[str, Any], by: str) -> None:
        was = self.template.definition()
        revision = self.template.revision
        count = len(self.events)
        result = self.run(lambda: self.template.revise(by, **changed))
        if "name" in changed:
            changed = {**changed, "name": changed["name"].strip()}
        wanted = {**was, **changed}
        if self.ever_archived or "colour" in changed or not valid_definition(wanted):
            assert result is None
        elif wanted == was:
            assert result is False
            assert len(self.events) == count, "a revision that changes nothing stores nothing"
        else:
            assert result is True
            assert len(self.events) == count + 1, "an accepted revision stores exactly one event"
            last = self.events[-1]
            assert isinstance(last, Template.Revised)
            assert (last.revision, last.by) == (revision + 1, by)
            assert {name: getattr(last, name) for name in DEFINITION_FIELDS} == wanted
            assert self.template.definition() == wanted

    @rule(changed=changes)
    def repeating_a_revision_adds_nothing(self, changed: dict[str, Any]) -> None:
        if self.run(lambda: self.template.revise("alice", **changed)) is None:
            return
        count, revision = len(self.events), self.template.revision
        assert self.run(lambda: self.template.revise("alice", **changed)) is False
        assert (len(self.events), self.template.revision) == (count, revision)

    @rule()
    def revising_to_the_current_definition_adds_nothing(self) -> None:
        count = len(self.events)
        result = self.run(lambda: self.template.revise("alice", **self.template.definition()))
        assert result is (None if self.ever_archived else False)
        assert len(self.events) == count

    @rule(by=st.sampled_from(["alice", "root"]))
    def archive(self, by: str) -> None:
        accepted = self.run(lambda: self.template.archive(by))
        assert (accepted is not None) == (not self.ever_archived)
        self.ever_archived = True

    @precondition(lambda self: self.ever_archived)
    @rule()
    def archiving_again_adds_nothing(self) -> None:
        count = len(self.events)
        assert self.run(lambda: self.template.archive("root")) is None
        assert len(self.events) == count

    @invariant()
    def the_revision_counts_the_revised_events_from_one(self) -> None:
        revisions = [e.revision for e in self.events if isinstance(e, Template.Revised)]
        assert revisions == list(range(2, 2 + len(revisions)))
        assert self.template.revision == 1 + len(revisions)

    @invariant()
    def archived_is_final_and_comes_once_at_the_end(self) -> None:
        archived = [i for i, e in enumerate(self.events) if isinstance(e, Template.Archived)]
        assert self.template.archived == self.ever_archived
        assert archived == ([len(self.events) - 1] if self.ever_archived else [])

    @invariant()
    def the_owner_and_the_versions_never_change_out_of_turn(self) -> None:
        assert self.template.owner == "alice"
        assert [e.originator_version for e in self.events] == list(range(1, len(self.events) + 1))
        assert all(type(e) in TEMPLATE_KINDS for e in self.events)

    @invariant()
    def replaying_the_stored_events_rebuilds_the_same_state(self) -> None:
        stored = [MAPPER.to_domain_event(MAPPER.to_stored_event(e)) for e in self.events]
        assert state_of(replayed(stored)) == state_of(self.template)
        assert state_of(replayed(self.events)) == state_of(self.template)


TestTemplateLifecycle = TemplateLifecycle.TestCase


def test_an_archived_template_keeps_its_last_revision() -> None:
    template = new_template()
    assert template.revise("alice", shared=True) is True
    template.archive("root")
    with pytest.raises(RuleViolation, match="archived template cannot be revised"):
        template.revise("alice", shared=False)
    assert (template.revision, template.shared, template.archived) == (2, True, True)
