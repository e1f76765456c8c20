"""The Template aggregate: a reusable task definition that tasks are created from.

A template has revisions: it is created at revision 1 and every revision stores the complete new
definition with the next number, so a task records exactly which definition it was made from
(`Task.Created.template_id` and `template_version`). Archived templates keep their history but
make no new tasks. The events are a storage contract: never rename or retype them.

Whether `config_schema` is a valid JSON Schema and `default_config` satisfies it is checked by
the application (application/templates.py) before a command reaches the aggregate: the domain
imports nothing but the standard library and eventsourcing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate

from agenttasks.domain.rules import TASK_TYPES, check

MAX_NAME_CHARS = 200
MAX_DESCRIPTION_CHARS = 5000
DEFINITION_FIELDS = (
    "name",
    "description",
    "task_type",
    "default_config",
    "config_schema",
    "shared",
)


class Template(Aggregate):
    """A named, versioned task definition: type, default configuration and its JSON Schema."""

    class Created(Aggregate.Created):
        name: str
        description: str
        task_type: str
        default_config: dict[str, Any]
        config_schema: dict[str, Any]
        shared: bool
        owner: str

    class Revised(Aggregate.Event):
        """A new revision: the complete definition after the change."""

        revision: int
        by: str
        name: str
        description: str
        task_type: str
        default_config: dict[str, Any]
        config_schema: dict[str, Any]
        shared: bool

        def apply(self, template: Template) -> None:
            template.revision = self.revision
            for name in DEFINITION_FIELDS:
                setattr(template, name, getattr(self, name))

    class Archived(Aggregate.Event):
        by: str

        def apply(self, template: Template) -> None:
            template.archived = True

    def __init__(
        self,
        name: str,
        description: str,
        task_type: str,
        default_config: dict[str, Any],
        config_schema: dict[str, Any],
        shared: bool,
        owner: str,
    ) -> None:
        self.name = name
        self.description = description
        self.task_type = task_type
        self.default_config = default_config
        self.config_schema = config_schema
        self.shared = shared
        self.owner = owner
        self.revision = 1
        self.archived = False

    @classmethod
    def create(
        cls,
        *,
        name: str,
        task_type: str,
        owner: str,
        description: str = "",
        default_config: dict[str, Any] | None = None,
        config_schema: dict[str, Any] | None = None,
        shared: bool = False,
    ) -> Template:
        name = name.strip()
        _check_definition(name, description, task_type)
        check(bool(owner), "a template needs an owner")
        return cls._create(
            cls.Created,
            name=name,
            description=description,
            task_type=task_type,
            default_config=default_config or {},
            config_schema=config_schema or {},
            shared=shared,
            owner=owner,
        )

    # Commands. Each checks its guards, then triggers exactly one event.

    def revise(self, by: str, **changes: Any) -> bool:
        """Stores a new revision with `changes`; False (and no event) when nothing changes."""
        check(not self.archived, "an archived template cannot be revised")
        unknown = sorted(set(changes) - set(DEFINITION_FIELDS))
        check(not unknown, f"templates have no field(s) {', '.join(unknown)}")
        if "name" in changes:
            changes["name"] = str(changes["name"]).strip()
        definition = {name: getattr(self, name) for name in DEFINITION_FIELDS}
        revised = {**definition, **changes}
        if revised == definition:
            return False
        _check_definition(revised["name"], revised["description"], revised["task_type"])
        self.trigger_event(self.Revised, revision=self.revision + 1, by=by, **revised)
        return True

    def archive(self, by: str) -> None:
        check(not self.archived, "the template is archived already")
        self.trigger_event(self.Archived, by=by)

    def definition(self) -> dict[str, Any]:
        """The fields a revision may change, as they are now."""
        return {name: getattr(self, name) for name in DEFINITION_FIELDS}

    @property
    def created_at(self) -> datetime:
        return self.created_on

    @property
    def updated_at(self) -> datetime:
        return self.modified_on


def _check_definition(name: str, description: str, task_type: str) -> None:
    check(bool(name), "name must not be empty")
    check(len(name) <= MAX_NAME_CHARS, f"name is longer than {MAX_NAME_CHARS} characters")
    check(
        len(description) <= MAX_DESCRIPTION_CHARS,
        f"description is longer than {MAX_DESCRIPTION_CHARS} characters",
    )
    check("\x00" not in name + description, "name and description must not contain NUL")
    check(task_type in TASK_TYPES, f"unknown task_type {task_type!r}")


# Event class -> the kind name used in subjects and payloads (a storage contract, like KINDS).
TEMPLATE_KINDS: dict[type[Any], str] = {
    Template.Created: "created",
    Template.Revised: "revised",
    Template.Archived: "archived",
}
