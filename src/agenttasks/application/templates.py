"""Template commands: create, revise, archive, and create tasks from a template.

Templates live in the same EventStore as tasks (one notification log). A template is private to
its owner unless shared; admins see all. Only the owner (or an admin) changes a template; anyone
who can see it may create tasks from it. An invisible template answers exactly like a missing one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from agenttasks.application.conflicts import retry_on_conflict
from agenttasks.application.schema_document import SchemaLimits
from agenttasks.application.store import EventStore, PositionedEvent, history
from agenttasks.application.task_configs import ConfigError
from agenttasks.application.tasks import Actor, NewTask, TaskCommands, Written
from agenttasks.application.template_configs import (
    DEFAULT_LIMITS,
    check_definition,
    merged_config,
)
from agenttasks.domain.rules import TASK_TYPES, check
from agenttasks.domain.template import (
    DEFINITION_FIELDS,
    MAX_DESCRIPTION_CHARS,
    MAX_NAME_CHARS,
    Template,
)


class TemplateNotFound(LookupError):
    """No such template, or not one the actor may see (the two are never told apart)."""


class NotTemplateOwner(PermissionError):
    """The actor may see the template (it is shared) but not change it."""


@dataclass(frozen=True)
class TemplateDraft:
    """A request to create a template, before validation."""

    name: str
    task_type: str
    description: str = ""
    default_config: dict[str, Any] = field(default_factory=dict)
    config_schema: dict[str, Any] = field(default_factory=dict)
    shared: bool = False


@dataclass(frozen=True)
class TaskFromTemplate:
    """A request to create a task from a template: overrides of its defaults, and task options."""

    task_config: dict[str, Any] = field(default_factory=dict)
    title: str | None = None  # default: the template's name
    priority: str = "normal"
    max_retries: int = 3
    timeout_seconds: int = 7200
    webhook_url: str | None = None  # checked by the caller (application/webhooks.py)


@dataclass(frozen=True)
class TemplateWritten:
    """The outcome of a template command: id, position of its last event (None: nothing new)."""

    template_id: UUID
    position: int | None
    template: Template


class TemplateCommands:
    """The write side of templates, on behalf of users; tasks are created through TaskCommands."""

    def __init__(
        self, store: EventStore, tasks: TaskCommands, limits: SchemaLimits = DEFAULT_LIMITS
    ) -> None:
        self.store = store
        self.tasks = tasks
        self.limits = limits  # caps on config schemas and on validating against them

    def create(self, actor: Actor, draft: TemplateDraft) -> TemplateWritten:
        """Creates a template owned by the actor (its schema and defaults checked first)."""
        definition = {name: getattr(draft, name) for name in DEFINITION_FIELDS}
        _check_fields(definition, self.limits)
        template = Template.create(owner=actor.user_id, **definition)
        recordings = self.store.save(template)
        return TemplateWritten(template.id, recordings[-1].notification.id, template)

    def get(self, actor: Actor, template_id: UUID) -> Template:
        """The template's current state, if the actor may see it."""
        try:
            template: Template = self.store.repository.get(template_id)
        except AggregateNotFoundError:
            raise TemplateNotFound(template_id) from None
        if not isinstance(template, Template) or not _may_see(actor, template):
            raise TemplateNotFound(template_id)
        return template

    def history(self, actor: Actor, template_id: UUID) -> list[PositionedEvent]:
        """The template's stored events with their positions."""
        self.get(actor, template_id)
        return history(self.store, template_id)

    def revise(
        self, actor: Actor, template_id: UUID, changes: Mapping[str, Any]
    ) -> TemplateWritten:
        """Stores a new revision with `changes`; nothing is written when nothing changes."""

        def attempt() -> TemplateWritten:  # revised or archived meanwhile: reload, decide again
            template = self._owned(actor, template_id)
            check(not template.archived, "an archived template cannot be revised")
            _check_fields({**template.definition(), **changes}, self.limits)
            if not template.revise(actor.user_id, **changes):
                return TemplateWritten(template_id, None, template)
            recordings = self.store.save(template)
            return TemplateWritten(template_id, recordings[-1].notification.id, template)

        return retry_on_conflict(attempt, f"template {template_id}")

    def archive(self, actor: Actor, template_id: UUID) -> TemplateWritten:
        """Archives the template (it keeps its history, and makes no new tasks); idempotent."""

        def attempt() -> TemplateWritten:
            template = self._owned(actor, template_id)
            if template.archived:
                return TemplateWritten(template_id, None, template)
            template.archive(actor.user_id)
            recordings = self.store.save(template)
            return TemplateWritten(template_id, recordings[-1].notification.id, template)

        return retry_on_conflict(attempt, f"template {template_id}")

    def task_config(
        self, actor: Actor, template_id: UUID, task_type: str | None, overrides: Any
    ) -> dict[str, Any]:
        """The template's defaults merged with `overrides`, checked (ConfigError otherwise)."""
        template = self.get(actor, template_id)
        if task_type is not None and task_type != template.task_type:
            raise ConfigError(
                [f"task_type: the template makes {template.task_type!r} tasks, not {task_type!r}"]
            )
        return merged_config(
            template.task_type,
            template.default_config,
            template.config_schema,
            overrides,
            self.limits,
        )

    def create_task(
        self,
        actor: Actor,
        template_id: UUID,
        request: TaskFromTemplate,
        idempotency_key: str | None = None,
    ) -> Written:
        """Creates a task from the template's current revision (refused once it is archived)."""
        template = self.get(actor, template_id)
        check(not template.archived, "the template is archived; it makes no new tasks")
        config = merged_config(
            template.task_type,
            template.default_config,
            template.config_schema,
            request.task_config,
            self.limits,
        )
        new = NewTask(
            title=request.title if request.title is not None else template.name,
            task_type=template.task_type,
            task_config=config,
            priority=request.priority,
            template_id=template.id,
            template_version=template.revision,
            max_retries=request.max_retries,
            timeout_seconds=request.timeout_seconds,
            webhook_url=request.webhook_url,
        )
        return self.tasks.create(actor, new, idempotency_key)

    def _owned(self, actor: Actor, template_id: UUID) -> Template:
        template = self.get(actor, template_id)
        if not (actor.is_admin or template.owner == actor.user_id):
            raise NotTemplateOwner("only the template's owner (or an admin) may change it")
        return template


def _may_see(actor: Actor, template: Template) -> bool:
    return actor.is_admin or template.shared or template.owner == actor.user_id


def _check_fields(definition: Mapping[str, Any], limits: SchemaLimits) -> None:
    """Bad input becomes a ValueError (400) naming the field, before the aggregate sees it."""
    unknown = sorted(set(definition) - set(DEFINITION_FIELDS))
    if unknown:
        raise ValueError(f"templates have no field(s) {', '.join(unknown)}")
    name, description = definition["name"], definition["description"]
    if not isinstance(name, str) or not name.strip():
        raise ValueError("name must not be empty")
    if len(name.strip()) > MAX_NAME_CHARS:
        raise ValueError(f"name is {len(name.strip())} characters; the limit is {MAX_NAME_CHARS}")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS:
        raise ValueError(f"description must be text of at most {MAX_DESCRIPTION_CHARS} characters")
    if "\x00" in name + description:
        raise ValueError("name and description must not contain NUL characters")
    if definition["task_type"] not in TASK_TYPES:
        raise ValueError(
            f"task_type {definition['task_type']!r} is unknown; one of: {', '.join(TASK_TYPES)}"
        )
    if not isinstance(definition["shared"], bool):
        raise ValueError("shared must be true or false")
    check_definition(
        definition["task_type"],
        definition["default_config"],
        definition["config_schema"],
        limits,
    )
