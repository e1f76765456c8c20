"""The payloads published on NATS and the subjects they go to: a public interface.

docs/events.md describes the same scheme for outside subscribers; change both together, and only
by adding optional fields.

Subjects:
    agenttasks.events.task.<task_type>.<priority>.<task_id>.<kind>
    agenttasks.events.template.<template_id>.<kind>
    agenttasks.events.skipped.<position>
    agenttasks.events.purged.<task_id>
    agenttasks.events.budget.<kind>
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

import msgspec

STREAM = "AGENTTASKS_EVENTS"
SUBJECT_ROOT = "agenttasks.events"
ALL_SUBJECTS = f"{SUBJECT_ROOT}.>"


class TaskEvent(msgspec.Struct, tag_field="stream", tag="task", kw_only=True, dict=True):
    """One stored task event, as published."""

    position: int  # notification id in the event store: global order, may have gaps
    task_id: str
    type: str  # created, started, progress, result, completed, failed, cancelled, retried, info
    version: int  # per-task sequence, starting at 1
    timestamp: datetime
    user: str  # the task's owner (created_by)
    task_type: str
    priority: str
    update_type: str  # progress, status, result, error, info
    status: str  # the task's status after this event
    progress: int  # the task's progress after this event
    message: str
    data: dict[str, Any]  # the event's own fields, as stored
    # Optional, added later (older payloads decode with them filled in):
    partial: dict[str, Any] | None = None  # a result's streamed piece {offset, text}, flat
    progress_percentage: int | None = None  # the guide's name for `progress`; always set

    def __post_init__(self) -> None:
        if self.progress_percentage is None:
            self.progress_percentage = self.progress


class TemplateEvent(msgspec.Struct, tag_field="stream", tag="template", kw_only=True, dict=True):
    """One stored template event, as published."""

    position: int
    template_id: str
    type: str  # created, revised, archived, ...
    version: int
    timestamp: datetime
    user: str  # the template's owner
    data: dict[str, Any]


class SkippedEvent(msgspec.Struct, tag_field="stream", tag="skipped", kw_only=True):
    """In place of a stored event the relay could not decode: that position will not come."""

    position: int
    originator_id: str | None  # the task's or template's id, when the store knows it
    reason: str  # our text (exception type names), never the stored content


class PurgedEvent(msgspec.Struct, tag_field="stream", tag="purged", kw_only=True):
    """A task was deleted (by its owner, an admin or retention): read models drop its rows.

    Carries what the statistics keep of the task, never its title, config, result or error.
    Published on its own subject, so a purge of the task's subjects never removes it.
    """

    position: int
    task_id: str
    timestamp: datetime  # when it was deleted
    actor: str  # who deleted it
    reason: str  # user, admin, retention
    user: str  # the task's owner
    task_type: str
    priority: str
    status: str  # its final status
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    prompt_tokens: int | None
    completion_tokens: int | None
    template_id: str | None
    template_version: int | None
    events: int  # stored events removed with it
    # The sums of its model calls over every attempt (docs/cost.md), as the statistics keep them.
    cost_usd: str | None = None  # decimal string: the priced calls
    model_calls: int = 0
    unpriced_calls: int = 0
    call_prompt_tokens: int = 0
    call_completion_tokens: int = 0
    cached_tokens: int = 0


class BudgetEvent(msgspec.Struct, tag_field="stream", tag="budget", kw_only=True):
    """A user's budget alert (BudgetAlert.Created: the soft limit of a period was passed)."""

    position: int
    type: str  # soft_limit_reached
    timestamp: datetime
    user: str  # whose budget
    task_id: str  # the task whose model call passed the soft limit
    data: dict[str, Any]  # period, period_start, limit_usd, soft_limit_usd, spent_usd


BusEvent = TaskEvent | TemplateEvent | SkippedEvent | PurgedEvent | BudgetEvent

_decoder = msgspec.json.Decoder(BusEvent)
_encoder = msgspec.json.Encoder()
# The payloads whose struct holds a __dict__ (dict=True: never encoded, not compared) for the
# bytes the mapper made (`prepared`).
_PREPARABLE = frozenset({TaskEvent, TemplateEvent})
_ENCODED = "encoded"
BusEventT = TypeVar("BusEventT", TaskEvent, TemplateEvent)


def encode(event: BusEvent) -> bytes:
    """The JSON bytes published for `event`."""
    if type(event) in _PREPARABLE:
        encoded: bytes | None = event.__dict__.get(_ENCODED)
        if encoded is not None:
            return encoded
    return _encoder.encode(event)


def prepared(event: BusEventT, encoded: bytes) -> BusEventT:
    """`event`, carrying `encoded` (its bytes) for `encode` to return.

    The mapper encodes a payload anyway (to look for NUL in it); this spares the publish a
    second encode. A payload is never changed after that (structs are built, not edited).
    """
    event.__dict__[_ENCODED] = encoded
    return event


def decode(payload: bytes) -> BusEvent:
    """Decodes a published payload; raises msgspec.DecodeError on anything else."""
    event: BusEvent = _decoder.decode(payload)
    return event


def subject_of(event: BusEvent) -> str:
    """The subject `event` is published on."""
    if isinstance(event, TaskEvent):
        return (
            f"{SUBJECT_ROOT}.task.{event.task_type}.{event.priority}.{event.task_id}.{event.type}"
        )
    if isinstance(event, TemplateEvent):
        return f"{SUBJECT_ROOT}.template.{event.template_id}.{event.type}"
    if isinstance(event, PurgedEvent):
        return f"{SUBJECT_ROOT}.purged.{event.task_id}"
    if isinstance(event, BudgetEvent):
        return budget_subject(event.type)
    return f"{SUBJECT_ROOT}.skipped.{event.position}"


def message_id(event: BusEvent) -> str:
    """A stable id of the stored event, for JetStream's de-duplication (`Nats-Msg-Id`)."""
    return f"agenttasks:{event.position}"


def budget_subject(kind: str = "*") -> str:
    """The subject of budget alerts (no user in it: a user id may hold any character)."""
    return f"{SUBJECT_ROOT}.budget.{kind}"


def task_subject(
    *, task_type: str = "*", priority: str = "*", task_id: str = "*", kind: str = "*"
) -> str:
    """A subject filter over task events; unspecified tokens match anything."""
    return f"{SUBJECT_ROOT}.task.{task_type}.{priority}.{task_id}.{kind}"
