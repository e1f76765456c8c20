"""The statistics and template read models on real servers: live equals replay, figures are exact."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from agenttasks import bootstrap
from agenttasks.application.bus_payloads import mapper_for
from agenttasks.application.tasks import Actor, NewTask, TaskCommands
from agenttasks.application.templates import TaskFromTemplate, TemplateCommands, TemplateDraft
from agenttasks.projections.replay import replay
from agenttasks.projections.statistics import statistics_projection
from agenttasks.projections.statistics_queries import StatisticsQueries
from agenttasks.projections.template_queries import TemplateFilter, TemplateQueries
from agenttasks.servers.nats import EmbeddedNats
from tests.integration.stack import Stack, running_stack

ALICE, BOB, ADMIN = Actor("alice"), Actor("bob"), Actor("root", is_admin=True)
# Every read model `up` runs (the composition root's list), so `replay all` meets each live.
NAMES = tuple(bootstrap.projections())


def all_projections() -> tuple[Any, ...]:
    return tuple(bootstrap.projections().values())


@pytest.fixture
async def stack(database_url: str, nats_server: EmbeddedNats) -> AsyncIterator[Stack]:
    async with running_stack(database_url, nats_server, projections=all_projections()) as stack:
        yield stack


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = AsyncConnectionPool(database_url, min_size=1, max_size=2, open=False)
    await pool.open()
    try:
        yield pool
    finally:
        await pool.close()


async def projected(stack: Stack) -> None:
    for name in NAMES:
        await stack.projected(name)


def run(
    commands: TaskCommands,
    actor: Actor,
    outcome: str,
    *,
    task_type: str = "summary",
    priority: str = "normal",
    usage: dict[str, Any] | None = None,
    template: tuple[TemplateCommands, UUID] | None = None,
) -> UUID:
    """A task taken to `outcome`: pending, running, completed, failed, cancelled, or retried."""
    configs = {"summary": {"content": "Text."}, "research": {"topic": "Bees"}}
    if template is not None:
        templates, template_id = template
        task_id = templates.create_task(actor, template_id, TaskFromTemplate()).task_id
    else:
        new = NewTask("t", task_type, configs[task_type], priority=priority)
        task_id = commands.create(actor, new).task_id
    if outcome == "pending":
        return task_id
    commands.start(task_id, 1, "w")
    commands.report_progress(task_id, 1, 50, "half")
    if outcome == "completed":
        commands.complete(task_id, 1, {"text": "done", **({"usage": usage} if usage else {})})
    elif outcome in ("failed", "retried"):
        commands.fail(task_id, 1, "boom", "it broke")
        if outcome == "retried":
            commands.retry(actor, task_id)
            commands.start(task_id, 2, "w")
            commands.complete(task_id, 2, {"text": "second time"})
    elif outcome == "cancelled":
        commands.cancel(actor, task_id)
    return task_id


def percentile(values: list[float], fraction: float) -> float:
    """percentile_cont: linear interpolation between the closest ranks."""
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


async def test_statistics_give_exact_totals_rates_percentiles_and_tokens(
    stack: Stack, pool: AsyncConnectionPool
) -> None:
    commands = stack.commands
    mine = [
        run(commands, ALICE, "completed", usage={"prompt_tokens": 10, "completion_tokens": 5}),
        run(commands, ALICE, "completed", task_type="research", priority="urgent",
            usage={"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}),
        run(commands, ALICE, "completed", usage={"prompt_tokens": "lots"}),
        run(commands, ALICE, "retried", priority="high"),
        run(commands, ALICE, "failed"),
        run(commands, ALICE, "cancelled"),
        run(commands, ALICE, "running"),
        run(commands, ALICE, "pending", priority="low"),
    ]  # fmt: skip
    run(commands, BOB, "completed", usage={"prompt_tokens": 1000, "completion_tokens": 1000})
    await projected(stack)

    figures = await StatisticsQueries(pool).statistics(ALICE, everyone=False, since=None)

    assert figures.scope == "mine"
    assert figures.total == 8
    assert figures.by_status == {
        "pending": 1, "running": 1, "completed": 4, "failed": 1, "cancelled": 1,
    }  # fmt: skip
    assert figures.by_type["summary"] == 7
    assert figures.by_type["research"] == 1
    assert figures.by_type["custom"] == 0
    assert figures.by_priority == {"low": 1, "normal": 5, "high": 1, "urgent": 1}
    assert figures.success_rate == pytest.approx(4 / 6)
    tasks = [commands.get(ALICE, task_id) for task_id in mine]
    durations = [
        (t.completed_at - t.started_at).total_seconds()
        for t in tasks
        if t.status == "completed" and t.started_at and t.completed_at
    ]
    assert len(durations) == figures.duration.count == 4
    assert figures.duration.average_seconds == pytest.approx(sum(durations) / 4, abs=1e-6)
    assert figures.duration.p50_seconds == pytest.approx(percentile(durations, 0.5), abs=1e-6)
    assert figures.duration.p95_seconds == pytest.approx(percentile(durations, 0.95), abs=1e-6)
    assert figures.tokens.tasks_with_usage == 2, "a non-numeric count is not a recorded usage"
    assert (figures.tokens.prompt_tokens, figures.tokens.completion_tokens) == (17, 6)
    assert figures.tokens.total_tokens == 23
    today = datetime.now(UTC).date()
    assert [(d.date, d.count) for d in figures.tasks_per_day] == [(today, 8)]

    everyone = await StatisticsQueries(pool).statistics(ADMIN, everyone=True, since=None)
    assert (everyone.scope, everyone.total, everyone.tokens.prompt_tokens) == ("all", 9, 1017)
    with pytest.raises(PermissionError):
        await StatisticsQueries(pool).statistics(ALICE, everyone=True, since=None)


async def test_since_limits_the_period_to_tasks_created_from_then(
    stack: Stack, pool: AsyncConnectionPool
) -> None:
    commands = stack.commands
    first = run(commands, ALICE, "completed")
    cut = commands.get(ALICE, first).created_at + timedelta(microseconds=1)
    run(commands, ALICE, "failed")
    await projected(stack)
    queries = StatisticsQueries(pool)
    later = await queries.statistics(ALICE, everyone=False, since=cut)
    assert (later.total, later.by_status["failed"], later.success_rate) == (1, 1, 0.0)
    future = await queries.statistics(ALICE, everyone=False, since=cut + timedelta(days=1))
    assert (future.total, future.success_rate, future.duration.p50_seconds) == (0, None, None)
    assert future.tasks_per_day == []
    assert future.by_status["completed"] == 0


async def test_template_usage_counts_uses_and_the_fate_of_their_tasks(
    stack: Stack, pool: AsyncConnectionPool
) -> None:
    commands = stack.commands
    templates = TemplateCommands(stack.store, commands)
    popular = templates.create(ALICE, TemplateDraft("Popular", "summary", shared=True,
                                                    default_config={"content": "x"}))  # fmt: skip
    quiet = templates.create(ALICE, TemplateDraft("Quiet", "summary",
                                                  default_config={"content": "y"}))  # fmt: skip
    templates.create(ALICE, TemplateDraft("Unused", "summary"))
    used = [
        run(commands, ALICE, outcome, template=(templates, popular.template_id))
        for outcome in ("completed", "completed", "failed", "cancelled", "running")
    ]
    run(commands, BOB, "retried", template=(templates, popular.template_id))
    run(commands, ALICE, "failed", template=(templates, quiet.template_id))
    run(commands, ALICE, "completed")  # no template
    await projected(stack)

    queries = TemplateQueries(pool)
    view = await queries.get(BOB, popular.template_id)
    assert view is not None
    assert view.usage.usage_count == 6
    assert (view.usage.completed, view.usage.failed, view.usage.cancelled) == (3, 1, 1)
    assert view.usage.success_rate == pytest.approx(3 / 5)
    finished = [commands.get(ADMIN, t) for t in used[:2]]
    finished += [commands.get(ADMIN, t) for t in await _bobs(stack, popular.template_id)]
    expected = sum((t.completed_at - t.started_at).total_seconds() for t in finished) / 3  # type: ignore[operator]
    assert view.usage.average_duration_seconds == pytest.approx(expected, abs=1e-6)
    last_task = commands.get(ALICE, used[-1])
    assert view.usage.last_used_at is not None
    assert view.usage.last_used_at <= datetime.now(UTC)
    assert view.usage.last_used_at > last_task.created_at - timedelta(seconds=1)

    assert [v.name for v in await queries.popular(ALICE, 10)] == ["Popular", "Quiet"]
    assert [v.name for v in await queries.popular(BOB, 10)] == ["Popular"], "Quiet is private"
    count, listed = await queries.page(BOB, TemplateFilter(), "-usage", 0, 10)
    assert (count, [v.name for v in listed]) == (1, ["Popular"])
    count, listed = await queries.page(ADMIN, TemplateFilter(), "name", 0, 10)
    assert [v.name for v in listed] == ["Popular", "Quiet", "Unused"]

    templates.archive(ALICE, popular.template_id)
    await projected(stack)
    assert [v.name for v in await queries.popular(ALICE, 10)] == ["Quiet"]
    archived = await queries.page(ALICE, TemplateFilter(archived=True), "name", 0, 10)
    assert [(v.name, v.archived) for v in archived[1]][:1] == [("Popular", True)]


async def _bobs(stack: Stack, template_id: UUID) -> list[UUID]:
    rows = stack.rows(
        f"SELECT id FROM tasks WHERE created_by = 'bob' AND template_id = '{template_id}'"
    )
    return [row[0] for row in rows]


async def test_every_new_read_model_replayed_from_the_store_equals_the_live_one(
    stack: Stack, database_url: str
) -> None:
    commands = stack.commands
    templates = TemplateCommands(stack.store, commands)
    template_id = templates.create(
        ALICE, TemplateDraft("T", "research", default_config={"topic": "Owls"})
    ).template_id
    templates.revise(ALICE, template_id, {"shared": True, "description": "Owls, mostly"})
    for outcome in ("completed", "retried", "cancelled", "pending", "failed", "running"):
        run(commands, ALICE, outcome, usage={"prompt_tokens": 3, "completion_tokens": 4})
        run(commands, BOB, outcome, template=(templates, template_id))
    templates.archive(ALICE, template_id)
    await projected(stack)
    mapper = mapper_for(stack.store)
    newest = stack.store.recorder.max_notification_id()

    for projection in all_projections()[1:]:
        report = replay(projection, stack.store, mapper, database_url, verify=True)
        assert report.differences == [], projection.name
        assert report.position == newest
    assert stack.rows("SELECT revision, archived, shared FROM templates") == [(2, True, True)]
    assert stack.rows("SELECT usage_count FROM template_usage") == [(6,)]

    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("UPDATE task_statistics SET status = 'failed' WHERE created_by = 'bob'")
    report = replay(statistics_projection(), stack.store, mapper, database_url, verify=True)
    assert len(report.differences) == 5, "every one of bob's tasks but the one that failed"
    assert all("status: live 'failed'" in d for d in report.differences)
