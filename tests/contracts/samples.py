"""One sample of every event class at its current version, with fixed ids, times and values.

`tool.py` writes each sample once as a stored fixture (fixtures/<name>.json); the suite decodes
the fixture and compares it with the sample field by field. When a class's version goes up,
its old samples move to UPCAST, which says what the old fixture must decode to now, and a new
sample at the new version is added here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from agenttasks.domain.limits import UserLimits
from agenttasks.domain.task import Task
from agenttasks.domain.template import Template

TASK_ID = UUID("3a05f94d-4a25-553b-916a-7cf44a665069")
TEMPLATE_ID = UUID("0b6c3f0e-8d3b-4c1e-9a55-6f2d8e1a7c40")
LIMITS_ID = UUID("5d0c1e8a-2f4b-5c6d-8e9f-0a1b2c3d4e5f")


def at(second: int) -> datetime:
    return datetime(2026, 11, 30, 9, 0, second, 123456, tzinfo=UTC)


def _task(version: int) -> dict[str, Any]:
    return {"originator_id": TASK_ID, "originator_version": version, "timestamp": at(version)}


def _template(version: int) -> dict[str, Any]:
    return {"originator_id": TEMPLATE_ID, "originator_version": version, "timestamp": at(version)}


SCHEMA = {"type": "object", "properties": {"topic": {"type": "string"}}, "required": ["topic"]}

# Fixture name (`<Qualname>.v<class_version>.<case>`) -> the event as the code builds it now.
CURRENT: dict[str, Any] = {
    "Task.Created.v2.with_webhook": Task.Created(
        **_task(1),
        originator_topic="agenttasks.domain.task:Task",
        title="Résumé of the week 🗞",
        task_type="summary",
        task_config={"content": "text", "urls": ["https://example.org/a"], "max_length": 200},
        priority="high",
        created_by="alice",
        template_id=TEMPLATE_ID,
        template_version=2,
        max_retries=3,
        timeout_seconds=7200,
        webhook_url="https://hooks.example.org/agenttasks?team=7",
    ),
    "Task.Started.v1.first": Task.Started(**_task(2), attempt=1, worker_id="worker-1"),
    "Task.Progressed.v1.half": Task.Progressed(
        **_task(3), attempt=1, progress=50, message="Fetched 1 of 2 sources"
    ),
    "Task.ResultRecorded.v2.streamed": Task.ResultRecorded(
        **_task(4),
        attempt=1,
        data={"partial": {"offset": 12, "text": "brief: ✓"}},
        message="Partial result",
        progress=50,
        partial={"offset": 12, "text": "brief: ✓"},
    ),
    "Task.ResultRecorded.v2.plain": Task.ResultRecorded(
        **_task(5), attempt=1, data={"rows": 10}, message="Parsed the CSV", progress=60
    ),
    "Task.Noted.v1.error": Task.Noted(
        **_task(6),
        attempt=1,
        level="error",
        message="A source failed",
        data={"url": "https://example.org/b", "status": 503},
        progress=60,
    ),
    "Task.Failed.v1.network": Task.Failed(
        **_task(7),
        attempt=1,
        error_kind="network",
        error_message="connection reset",
        retryable=True,
        progress=60,
    ),
    "Task.Retried.v1.automatic": Task.Retried(
        **_task(8),
        attempt=2,
        by="system",
        automatic=True,
        reason="Retrying automatically",
        not_before=at(38),
    ),
    "Task.Cancelled.v1.by_owner": Task.Cancelled(
        **_task(9), attempt=2, by="alice", reason="Cancelled", progress=0
    ),
    "Task.Retried.v1.manual": Task.Retried(
        **_task(10), attempt=3, by="alice", automatic=False, reason="Retried", not_before=None
    ),
    "Task.Completed.v1.summary": Task.Completed(
        **_task(11),
        attempt=3,
        result_data={
            "summary": "The week in brief.",
            "engine": "model",
            "usage": {"prompt_tokens": 120, "completion_tokens": 30},
        },
        message="Completed",
    ),
    "Template.Created.v1.blog": Template.Created(
        **_template(1),
        originator_topic="agenttasks.domain.template:Template",
        name="Weekly post",
        description="A casual post",
        task_type="content_generation",
        default_config={"topic": "This week", "tone": "casual"},
        config_schema=SCHEMA,
        shared=False,
        owner="alice",
    ),
    "Template.Revised.v1.shared": Template.Revised(
        **_template(2),
        revision=2,
        by="alice",
        name="Weekly post",
        description="",
        task_type="content_generation",
        default_config={"topic": "This week"},
        config_schema=SCHEMA,
        shared=True,
    ),
    "Template.Archived.v1.by_admin": Template.Archived(**_template(3), by="root"),
    "UserLimits.Created.v1.alice": UserLimits.Created(
        originator_id=LIMITS_ID,
        originator_version=1,
        timestamp=at(1),
        originator_topic="agenttasks.domain.limits:UserLimits",
        user_id="alice",
    ),
    "UserLimits.LimitsSet.v1.both": UserLimits.LimitsSet(
        originator_id=LIMITS_ID,
        originator_version=2,
        timestamp=at(2),
        by="root",
        rate_limit="120/minute",
        max_active_tasks=10,
    ),
    "UserLimits.LimitsSet.v1.back_to_defaults": UserLimits.LimitsSet(
        originator_id=LIMITS_ID,
        originator_version=3,
        timestamp=at(3),
        by="root",
        rate_limit=None,
        max_active_tasks=None,
    ),
}

# Fixture name of an older class version -> the fields it must decode to today (upcast).
UPCAST: dict[str, dict[str, Any]] = {
    # v1 -> v2: tasks stored before webhooks have none.
    "Task.Created.v1.from_template": {
        **_task(1),
        "originator_topic": "agenttasks.domain.task:Task",
        "title": "Résumé of the week 🗞",
        "task_type": "summary",
        "task_config": {"content": "text", "urls": ["https://example.org/a"], "max_length": 200},
        "priority": "high",
        "created_by": "alice",
        "template_id": TEMPLATE_ID,
        "template_version": 2,
        "max_retries": 3,
        "timeout_seconds": 7200,
        "webhook_url": None,
    },
    # v1 -> v2: the streamed piece is lifted out of `data` into `partial`; `data` stays as is.
    "Task.ResultRecorded.v1.streamed": {
        **_task(4),
        "attempt": 1,
        "data": {"partial": {"offset": 0, "text": "The week in "}},
        "message": "Partial result",
        "progress": 50,
        "partial": {"offset": 0, "text": "The week in "},
    },
    "Task.ResultRecorded.v1.plain": {
        **_task(5),
        "attempt": 1,
        "data": {"rows": 10},
        "message": "Parsed the CSV",
        "progress": 60,
        "partial": None,
    },
}
