"""Templates on the in-memory store: checked definitions, revisions, visibility, tasks from them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import IntegrityError

from agenttasks.application.bus_payloads import mapper_for
from agenttasks.application.store import open_event_store, read_log
from agenttasks.application.task_configs import ConfigError
from agenttasks.application.tasks import Actor, TaskNotFound
from agenttasks.application.template_configs import deep_merge, schema_errors, schema_validator
from agenttasks.application.templates import (
    NotTemplateOwner,
    TaskFromTemplate,
    TemplateCommands,
    TemplateDraft,
    TemplateNotFound,
)
from agenttasks.bootstrap import schema_limits, task_commands
from agenttasks.bus.messages import TaskEvent, TemplateEvent
from agenttasks.domain.rules import RuleViolation
from agenttasks.domain.template import Template
from agenttasks.settings import Settings, SettingsError

ALICE, BOB, ADMIN = Actor("alice"), Actor("bob"), Actor("root", is_admin=True)
TOPIC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "topic": {"type": "string", "minLength": 3},
        "length": {"type": "integer", "maximum": 800},
        "tone": {"enum": ["casual", "formal"]},
    },
    "required": ["topic"],
}


@pytest.fixture
def commands() -> TemplateCommands:
    store = open_event_store()
    return TemplateCommands(store, task_commands(store))


def blog_post(**overrides: Any) -> TemplateDraft:
    values: dict[str, Any] = {
        "name": "Blog post",
        "task_type": "content_generation",
        "description": "A casual post",
        "default_config": {"topic": "Templates", "tone": "casual", "length": 300},
        "config_schema": TOPIC_SCHEMA,
    }
    values.update(overrides)
    return TemplateDraft(**values)


def errors_of(call: Any) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        call()
    return raised.value.errors


def test_a_created_template_starts_at_revision_one_and_records_its_owner(
    commands: TemplateCommands,
) -> None:
    written = commands.create(ALICE, blog_post())
    template = commands.get(ALICE, written.template_id)
    assert (template.revision, template.owner, template.archived) == (1, "alice", False)
    assert template.default_config == {"topic": "Templates", "tone": "casual", "length": 300}
    assert written.position == 1


def test_an_invalid_json_schema_is_refused_naming_the_schema(commands: TemplateCommands) -> None:
    errors = errors_of(
        lambda: commands.create(ALICE, blog_post(config_schema={"type": "object", "minLength": -1}))
    )
    assert len(errors) == 1
    assert errors[0].startswith("config_schema is not a valid JSON Schema (draft 2020-12)")
    assert "`config_schema.minLength`" in errors[0]
    not_object = errors_of(lambda: commands.create(ALICE, blog_post(config_schema=[1])))
    assert not_object == ["config_schema must be a JSON object (a JSON Schema)"]


def test_defaults_that_break_the_schema_are_refused_naming_each_field(
    commands: TemplateCommands,
) -> None:
    errors = errors_of(
        lambda: commands.create(
            ALICE, blog_post(default_config={"topic": "ab", "length": 900, "tone": "casual"})
        )
    )
    assert errors == [
        "`default_config.length`: 900 is greater than the maximum of 800",
        "`default_config.topic`: 'ab' is too short",
    ]


def test_defaults_that_break_the_task_types_rules_are_refused(commands: TemplateCommands) -> None:
    unknown = errors_of(
        lambda: commands.create(ALICE, blog_post(default_config={"topic": "abc", "colour": 1}))
    )
    assert unknown == ["default_config has unknown field `colour`"]
    wrong = errors_of(
        lambda: commands.create(
            ALICE, blog_post(config_schema={}, default_config={"topic": "abc", "tone": "shouty"})
        )
    )
    assert wrong == ["Invalid enum value 'shouty' - at `default_config.tone`"]


def test_defaults_may_leave_required_fields_to_each_task(commands: TemplateCommands) -> None:
    research = commands.create(
        ALICE, TemplateDraft("Research", "research", default_config={"questions": ["Why?"]})
    )
    summary = commands.create(
        ALICE, TemplateDraft("Short summary", "summary", default_config={"max_length": 50})
    )
    assert commands.get(ALICE, research.template_id).default_config == {"questions": ["Why?"]}
    bad_summary = errors_of(
        lambda: commands.create(
            ALICE, TemplateDraft("s", "summary", default_config={"max_length": 5})
        )
    )
    assert bad_summary == ["Expected `int` >= 10 - at `default_config.max_length`"]
    written = commands.create_task(
        ALICE, summary.template_id, TaskFromTemplate({"content": "Some text."})
    )
    task = commands.tasks.get(ALICE, written.task_id)
    assert task.task_config == {"content": "Some text.", "urls": [], "max_length": 50}


def test_bad_names_and_types_are_value_errors_naming_the_field(commands: TemplateCommands) -> None:
    with pytest.raises(ValueError, match="name must not be empty"):
        commands.create(ALICE, blog_post(name="  "))
    with pytest.raises(ValueError, match="name is 201 characters; the limit is 200"):
        commands.create(ALICE, blog_post(name="x" * 201))
    with pytest.raises(ValueError, match="task_type 'poetry' is unknown"):
        commands.create(ALICE, blog_post(task_type="poetry"))


def test_a_task_from_a_template_merges_overrides_deeply_and_records_the_revision(
    commands: TemplateCommands,
) -> None:
    template_id = commands.create(
        ALICE,
        TemplateDraft(
            "Chain",
            "custom",
            default_config={"steps": ["Say hello"]},
            config_schema={"type": "object"},
        ),
    ).template_id
    commands.revise(ALICE, template_id, {"default_config": {"steps": ["Say hi", "Then bye"]}})
    written = commands.create_task(
        ALICE, template_id, TaskFromTemplate({}, title="Greeting", priority="high")
    )
    task = commands.tasks.get(ALICE, written.task_id)
    assert (task.template_id, task.template_version, task.title) == (template_id, 2, "Greeting")
    assert task.task_config == {"steps": ["Say hi", "Then bye"]}
    assert task.priority == "high"

    assert deep_merge({"a": {"b": 1, "c": [1]}, "d": 1}, {"a": {"c": [2]}, "e": None}) == {
        "a": {"b": 1, "c": [2]},
        "d": 1,
        "e": None,
    }


def test_a_task_config_is_checked_against_the_schema_and_the_type_together(
    commands: TemplateCommands,
) -> None:
    template_id = commands.create(ALICE, blog_post()).template_id
    errors = errors_of(
        lambda: commands.create_task(
            ALICE, template_id, TaskFromTemplate({"length": 5000, "tone": "formal", "x": 1})
        )
    )
    assert errors == [
        "`task_config.length`: 5000 is greater than the maximum of 800",
        "task_config has unknown field `x`",
    ]
    title_default = commands.create_task(ALICE, template_id, TaskFromTemplate({"tone": "formal"}))
    task = commands.tasks.get(ALICE, title_default.task_id)
    assert task.title == "Blog post"
    assert task.task_config["tone"] == "formal"


def test_templates_are_private_unless_shared_and_admins_see_all(commands: TemplateCommands) -> None:
    private = commands.create(ALICE, blog_post()).template_id
    shared = commands.create(ALICE, blog_post(name="Shared", shared=True)).template_id
    with pytest.raises(TemplateNotFound):
        commands.get(BOB, private)
    with pytest.raises(TemplateNotFound):
        commands.create_task(BOB, private, TaskFromTemplate())
    with pytest.raises(TemplateNotFound):
        commands.get(BOB, uuid4())
    assert commands.get(ADMIN, private).owner == "alice"
    bobs_task = commands.create_task(BOB, shared, TaskFromTemplate())
    assert commands.tasks.get(BOB, bobs_task.task_id).created_by == "bob"
    with pytest.raises(NotTemplateOwner):
        commands.revise(BOB, shared, {"name": "Mine now"})
    with pytest.raises(NotTemplateOwner):
        commands.archive(BOB, shared)
    assert commands.revise(ADMIN, shared, {"name": "Renamed"}).template.name == "Renamed"


def test_a_revision_that_changes_nothing_writes_nothing(commands: TemplateCommands) -> None:
    template_id = commands.create(ALICE, blog_post()).template_id
    unchanged = commands.revise(ALICE, template_id, {"name": "Blog post", "shared": False})
    assert unchanged.position is None
    assert commands.get(ALICE, template_id).revision == 1
    revised = commands.revise(ALICE, template_id, {"shared": True})
    assert revised.position is not None
    assert revised.template.revision == 2


def test_a_revision_is_checked_like_a_new_template(commands: TemplateCommands) -> None:
    template_id = commands.create(ALICE, blog_post()).template_id
    errors = errors_of(
        lambda: commands.revise(
            ALICE, template_id, {"config_schema": {"type": "object", "required": ["tone2"]}}
        )
    )
    assert errors == ["`default_config`: 'tone2' is a required property"]
    with pytest.raises(ValueError, match="templates have no field"):
        commands.revise(ALICE, template_id, {"owner": "bob"})
    assert commands.get(ALICE, template_id).revision == 1


def test_an_archived_template_keeps_its_history_but_makes_no_tasks(
    commands: TemplateCommands,
) -> None:
    template_id = commands.create(ALICE, blog_post()).template_id
    assert commands.archive(ALICE, template_id).position is not None
    assert commands.archive(ALICE, template_id).position is None, "archiving again adds nothing"
    with pytest.raises(RuleViolation, match="archived"):
        commands.create_task(ALICE, template_id, TaskFromTemplate())
    with pytest.raises(RuleViolation, match="archived"):
        commands.revise(ALICE, template_id, {"name": "Again"})
    kinds = [type(item.event).__qualname__ for item in commands.history(ALICE, template_id)]
    assert kinds == ["Template.Created", "Template.Archived"]


def test_a_template_id_is_not_a_task_and_a_task_id_is_not_a_template(
    commands: TemplateCommands,
) -> None:
    template_id = commands.create(ALICE, blog_post()).template_id
    task_id = commands.create_task(ALICE, template_id, TaskFromTemplate()).task_id
    with pytest.raises(TemplateNotFound):
        commands.get(ADMIN, task_id)
    with pytest.raises(TaskNotFound):
        commands.tasks.get(ADMIN, template_id)


def test_template_events_are_published_with_their_owner(commands: TemplateCommands) -> None:
    template_id = commands.create(ALICE, blog_post()).template_id
    commands.create_task(
        BOB, commands.revise(ALICE, template_id, {"shared": True}).template_id, TaskFromTemplate()
    )
    commands.archive(ADMIN, template_id)
    mapper = mapper_for(commands.store)
    fresh = mapper_for(commands.store)  # no cache: the owner comes from the stored events
    payloads = [mapper.map(e.event, e.position) for e in read_log(commands.store)]
    later = [fresh.map(e.event, e.position) for e in read_log(commands.store, after=1)]
    assert [type(p).__name__ for p in payloads] == [
        "TemplateEvent", "TemplateEvent", "TaskEvent", "TemplateEvent",
    ]  # fmt: skip
    created, revised, task, archived = payloads
    assert isinstance(created, TemplateEvent)
    assert isinstance(archived, TemplateEvent)
    assert (created.type, created.user, created.data["name"]) == ("created", "alice", "Blog post")
    assert isinstance(revised, TemplateEvent)
    assert (revised.type, revised.version, revised.data["revision"]) == ("revised", 2, 2)
    assert (archived.type, archived.user, archived.data["by"]) == ("archived", "alice", "root")
    assert isinstance(task, TaskEvent)
    assert task.data["template_id"] == str(template_id)
    assert task.data["template_version"] == 2
    assert later[-1] == archived


def test_a_stale_copy_cannot_overwrite_a_newer_revision(commands: TemplateCommands) -> None:
    template_id = commands.create(ALICE, blog_post()).template_id
    stale: Template = commands.store.repository.get(template_id)
    commands.revise(ALICE, template_id, {"name": "First"})
    stale.revise("alice", name="Second")
    with pytest.raises(IntegrityError):
        commands.store.save(stale)
    assert commands.revise(ALICE, template_id, {"name": "Second"}).template.revision == 3


def test_the_domain_refuses_what_the_application_would_never_send() -> None:
    template = Template.create(name="x", task_type="summary", owner="alice")
    with pytest.raises(RuleViolation, match="no field"):
        template.revise("alice", owner="bob")
    template.archive("alice")
    with pytest.raises(RuleViolation, match="archived already"):
        template.archive("alice")
    with pytest.raises(RuleViolation, match="unknown task_type"):
        Template.create(name="x", task_type="poetry", owner="alice")


def test_the_schema_caps_come_from_the_settings() -> None:
    settings = Settings.from_env(
        {
            "AGENTTASKS_SCHEMA_MAX_DEPTH": "3",
            "AGENTTASKS_SCHEMA_MAX_SUBSCHEMAS": "4",
            "AGENTTASKS_SCHEMA_MAX_PATTERN_CHARS": "5",
            "AGENTTASKS_SCHEMA_MAX_VALIDATION_STEPS": "100",
        }
    )
    store = open_event_store()
    commands = TemplateCommands(store, task_commands(store), schema_limits(settings))
    draft = TemplateDraft("Capped", "content_generation", default_config={"topic": "abc"})

    def refused(schema: dict[str, Any]) -> list[str]:
        return errors_of(lambda: commands.create(ALICE, replace(draft, config_schema=schema)))

    assert refused({"properties": {"topic": {"not": {}}}}) == [
        "`config_schema.properties.topic.not`: nests deeper than 3 levels"
    ]
    assert refused({"properties": {"a": {}, "b": {}, "c": {}, "d": {}}}) == [
        "`config_schema`: has more than 4 objects"
    ]
    assert refused({"properties": {"topic": {"pattern": "abcdef"}}}) == [
        "`config_schema.properties.topic.pattern`: a pattern may have at most 5 chars"
    ]
    assert refused({"enum": list(range(200))}) == [
        "config_schema is too complex to validate `default_config`: it takes more than 100 steps"
    ]
    with pytest.raises(SettingsError, match="AGENTTASKS_SCHEMA_MAX_VALIDATION_DEPTH"):
        Settings.from_env({"AGENTTASKS_SCHEMA_MAX_VALIDATION_DEPTH": "5000"})


def test_unique_items_follows_json_equality(commands: TemplateCommands) -> None:
    schema = {"properties": {"urls": {"uniqueItems": True}}}
    errors = errors_of(
        lambda: commands.create(
            ALICE,
            TemplateDraft(
                "Unique",
                "summary",
                default_config={"content": "x", "urls": [{"a": 1}, {"a": 1.0}]},
                config_schema=schema,
            ),
        )
    )
    assert errors[0] == "`default_config.urls`: [{'a': 1}, {'a': 1.0}] has non-unique elements"
    distinct = TemplateDraft(
        "Distinct",
        "custom",
        default_config={"steps": ["a"]},
        config_schema={"properties": {"extra": {"uniqueItems": True}}, "type": "object"},
    )
    assert commands.create(ALICE, distinct).position is not None
    validator = schema_validator({"uniqueItems": True})
    assert schema_errors(validator, [True, 1, False, 0, None, "1", [1], {"1": 1}], "x") == []


def test_every_missing_required_field_is_named_once(commands: TemplateCommands) -> None:
    errors = errors_of(
        lambda: commands.revise(
            ALICE,
            commands.create(ALICE, blog_post()).template_id,
            {"config_schema": {"required": ["a", "b", "topic"]}},
        )
    )
    assert errors == [
        "`default_config`: 'a' is a required property",
        "`default_config`: 'b' is a required property",
    ]
