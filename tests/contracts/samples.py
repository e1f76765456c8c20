"""One sample of every event class at its current version, with fixed ids, times and values.

`tool.py` writes each sample once as a stored fixture (fixtures/<name>.json); the suite decodes
the fixture and compares it with the sample field by field. When a class's version goes up,
its old samples move to UPCAST, which says what the old fixture must decode to now, and a new
sample at the new version is added here.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from agenttasks.domain.budget import Budget, BudgetAlert
from agenttasks.domain.deletion import TaskDeletion, deletion_id
from agenttasks.domain.limits import UserLimits
from agenttasks.domain.task import Task
from agenttasks.domain.template import Template

TASK_ID = UUID("3a05f94d-4a25-553b-916a-7cf44a665069")
TEMPLATE_ID = UUID("0b6c3f0e-8d3b-4c1e-9a55-6f2d8e1a7c40")
LIMITS_ID = UUID("5d0c1e8a-2f4b-5c6d-8e9f-0a1b2c3d4e5f")
BUDGET_ID = UUID("7e1f2a3b-4c5d-5e6f-8a9b-0c1d2e3f4a5b")
DEFAULT_BUDGET_ID = UUID("8f2a3b4c-5d6e-5f7a-9b0c-1d2e3f4a5b6c")
ALERT_ID = UUID("9a3b4c5d-6e7f-5a8b-8c9d-2e3f4a5b6c7d")
DELETION_ID = deletion_id(TASK_ID)


def at(second: int) -> datetime:
    return datetime(2026, 11, 30, 9, 0, second, 123456, tzinfo=UTC)


def _task(version: int) -> dict[str, Any]:
    return {"originator_id": TASK_ID, "originator_version": version, "timestamp": at(version)}


def _template(version: int) -> dict[str, Any]:
    return {"originator_id": TEMPLATE_ID, "originator_version": version, "timestamp": at(version)}


SCHEMA = {"type": "object", "properties": {"topic": {"type": "string"}}, "required": ["topic"]}

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

# The task events as stored before they recorded a trace (each class's previous version).
_BEFORE_TRACES: dict[str, Any] = {
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
}


def _next_version(name: str) -> str:
    qualname, version, case = name.rsplit(".", 2)
    return f"{qualname}.v{int(version[1:]) + 1}.{case}"


# Fixture name (`<Qualname>.v<class_version>.<case>`) -> the event as the code builds it now.
CURRENT: dict[str, Any] = {
    **{
        _next_version(name): dataclasses.replace(event, trace=TRACE)
        for name, event in _BEFORE_TRACES.items()
    },
    "Task.ModelCalled.v1.priced": Task.ModelCalled(
        **_task(12),
        attempt=1,
        step=2,
        model="gpt-4o-mini-2024-07-18",
        provider="api.openai.com",
        prompt_tokens=1200,
        completion_tokens=340,
        cached_tokens=1024,
        usage="reported",
        latency_ms=1830,
        cost_usd="0.0003012",
        price_source="genai-prices",
        price_version="0.2.3",
        progress=55,
        trace=TRACE,
    ),
    "Task.ModelCalled.v1.unpriced": Task.ModelCalled(
        **_task(13),
        attempt=2,
        step=1,
        model="llama-3.1-8b",
        provider="vllm.internal",
        prompt_tokens=0,
        completion_tokens=0,
        cached_tokens=0,
        usage="missing",
        latency_ms=950,
        cost_usd=None,
        price_source="unknown",
        price_version=None,
        progress=0,
        trace=None,
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
    "Budget.Created.v1.alice": Budget.Created(
        originator_id=BUDGET_ID,
        originator_version=1,
        timestamp=at(1),
        originator_topic="agenttasks.domain.budget:Budget",
        user_id="alice",
    ),
    "Budget.Created.v1.default": Budget.Created(
        originator_id=DEFAULT_BUDGET_ID,
        originator_version=1,
        timestamp=at(1),
        originator_topic="agenttasks.domain.budget:Budget",
        user_id=None,
    ),
    "Budget.BudgetSet.v1.daily": Budget.BudgetSet(
        originator_id=BUDGET_ID,
        originator_version=2,
        timestamp=at(2),
        by="root",
        budget="5.00/day",
        soft_limit_percent=75,
    ),
    "Budget.BudgetSet.v1.back_to_default": Budget.BudgetSet(
        originator_id=BUDGET_ID,
        originator_version=3,
        timestamp=at(3),
        by="root",
        budget=None,
        soft_limit_percent=None,
    ),
    "BudgetAlert.Created.v1.daily": BudgetAlert.Created(
        originator_id=ALERT_ID,
        originator_version=1,
        timestamp=at(4),
        originator_topic="agenttasks.domain.budget:BudgetAlert",
        user_id="alice",
        period="day",
        period_start=datetime(2026, 11, 30, tzinfo=UTC),
        limit_usd="5.00",
        soft_limit_usd="3.75",
        spent_usd="3.7612",
        task_id=TASK_ID,
    ),
    "TaskDeletion.Created.v1.retention": TaskDeletion.Created(
        originator_id=DELETION_ID,
        originator_version=1,
        timestamp=at(9),
        originator_topic="agenttasks.domain.deletion:TaskDeletion",
        task_id=TASK_ID,
        actor="maintenance",
        reason="retention",
        owner="alice",
        task_type="summary",
        priority="normal",
        status="completed",
        created_at=at(1),
        started_at=at(2),
        finished_at=at(3),
        prompt_tokens=10,
        completion_tokens=5,
        template_id=TEMPLATE_ID,
        template_version=2,
        events=4,
        cost_usd="0.0012",
        model_calls=2,
        unpriced_calls=0,
        call_prompt_tokens=10,
        call_completion_tokens=5,
        cached_tokens=0,
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
        "trace": None,
    },
    # v1 -> v2: the streamed piece is lifted out of `data` into `partial`; `data` stays as is.
    "Task.ResultRecorded.v1.streamed": {
        **_task(4),
        "attempt": 1,
        "data": {"partial": {"offset": 0, "text": "The week in "}},
        "message": "Partial result",
        "progress": 50,
        "partial": {"offset": 0, "text": "The week in "},
        "trace": None,
    },
    "Task.ResultRecorded.v1.plain": {
        **_task(5),
        "attempt": 1,
        "data": {"rows": 10},
        "message": "Parsed the CSV",
        "progress": 60,
        "partial": None,
        "trace": None,
    },
}

# Every task event class's version before traces -> the same fields, with no trace.
UPCAST.update({name: {**vars(event), "trace": None} for name, event in _BEFORE_TRACES.items()})
