"""DELETE /api/v1/utils/ai-tasks/{id}/ on real servers: a deleted task is gone from the store,
every read model, the owner index and the stream; its statistics stay; replay verifies clean.

One stack for the module (database, NATS, relay, every read model's projector) and one API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from agenttasks import bootstrap, cli, purge_command
from agenttasks.application.tasks import Actor
from agenttasks.application.templates import TaskFromTemplate, TemplateCommands, TemplateDraft
from agenttasks.application.user_log import Selection, UserLog
from agenttasks.bus.connection import Bus, connect
from agenttasks.bus.messages import STREAM, task_subject
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.servers.postgres import EmbeddedPostgres, create_database
from agenttasks.settings import Settings
from tests.integration.api_client import bearer, serving, settings_for
from tests.integration.stack import Stack, running_stack
from tests.integration.test_statistics import run
from tests.waiting import wait_for_value, wait_until

BASE = "/api/v1/utils/ai-tasks"
ALICE, BOB, ADMIN = Actor("alice"), bearer("bob"), bearer("root", admin=True)
ALICE_TOKEN = bearer("alice")
# Every table keyed by a task that must lose the task's rows (table, column).
TASK_TABLES = (
    ("tasks", "id"),
    ("task_updates", "task_id"),
    ("template_usage_tasks", "task_id"),
    ("metric_tasks", "task_id"),
    ("agenttasks_task_owners", "task_id"),
    ("webhook_deliveries", "task_id"),
    ("event_quarantine", "originator_id::uuid"),
)


@pytest.fixture(scope="module")
def module_database(postgres: EmbeddedPostgres) -> str:
    return create_database(postgres.url, "test_deletion")


@pytest.fixture(scope="module")
async def stack(module_database: str, module_nats: EmbeddedNats) -> AsyncIterator[Stack]:
    bootstrap.ensure_read_models(module_database)  # the webhook and quarantine tables too
    with_all = tuple(bootstrap.projections().values())
    async with running_stack(module_database, module_nats, projections=with_all) as running:
        yield running


@pytest.fixture(scope="module")
async def api(stack: Stack, module_nats: EmbeddedNats) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serving(settings_for(stack.database_url, module_nats)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield client


@pytest.fixture(scope="module")
async def bus(module_nats: EmbeddedNats) -> AsyncIterator[Bus]:
    opened = await connect(module_nats.url_for("reader"), "test-deletion-reader")
    try:
        yield opened
    finally:
        await opened.close()


async def projected(stack: Stack) -> None:
    for name in stack.runners:
        await stack.projected(name)


def model_call(step: int, cost_usd: str | None) -> dict[str, Any]:
    return {
        "step": step, "model": "m", "provider": "p", "prompt_tokens": 10,
        "completion_tokens": 5, "cached_tokens": 0, "usage": "reported", "latency_ms": 3,
        "cost_usd": cost_usd, "price_source": "test", "price_version": None,
    }  # fmt: skip


def index_owners(stack: Stack) -> None:
    """Extends the owner index as a user's stream catch-up does (so it has rows to lose)."""
    log = UserLog(stack.store)
    log.ensure_tables()
    log.count(Selection(user="alice"), 0, log.newest(), 1)


def rows_of(stack: Stack, task_id: UUID) -> dict[str, int]:
    """Rows each task-keyed table holds for `task_id`."""
    counts = {}
    for table, column in TASK_TABLES:
        counts[table] = stack.rows(f"SELECT count(*) FROM {table} WHERE {column} = '{task_id}'")[0][
            0
        ]
    return counts


def stored_events(stack: Stack, task_id: UUID) -> int:
    table = stack.store.recorder.events_table_name  # type: ignore[attr-defined]
    query = f"SELECT count(*) FROM {table} WHERE originator_id = '{task_id}'"
    return int(stack.rows(query)[0][0])


async def stream_messages(bus: Bus, task_id: UUID) -> int:
    """Messages the stream holds on the task's subjects (JetStream's per-subject counts)."""
    info = await bus.js.stream_info(STREAM, subjects_filter=task_subject(task_id=str(task_id)))
    return sum((info.state.subjects or {}).values())


async def test_the_owner_deletes_a_finished_task_and_it_is_gone_from_everything_but_statistics(
    stack: Stack, api: httpx.AsyncClient, bus: Bus, tmp_path: Path, capsys: Any
) -> None:
    templates = TemplateCommands(stack.store, stack.commands)
    draft = TemplateDraft("T", "summary", default_config={"content": "x"})
    template_id = templates.create(ALICE, draft).template_id
    doomed = templates.create_task(ALICE, template_id, TaskFromTemplate()).task_id
    stack.commands.start(doomed, 1, "w")
    for step, cost in ((1, "0.0012"), (2, None)):  # a priced and an unpriced model call
        stack.commands.record_model_call(doomed, 1, model_call(step, cost))
    usage = {"prompt_tokens": 7, "completion_tokens": 3}
    stack.commands.complete(doomed, 1, {"text": "done", "usage": usage})
    kept = run(stack.commands, ALICE, "failed", template=(templates, template_id))
    await projected(stack)
    index_owners(stack)
    before = rows_of(stack, doomed)
    assert (before["tasks"], before["task_updates"], before["metric_tasks"]) == (1, 5, 1)
    assert (before["template_usage_tasks"], before["agenttasks_task_owners"]) == (1, 1)
    assert stored_events(stack, doomed) == 5
    assert await stream_messages(bus, doomed) == 5
    statistics = (
        "SELECT status, prompt_tokens, created_by, cost_usd::text, model_calls, unpriced_calls,"
        " call_prompt_tokens FROM task_statistics WHERE task_id = %s"
    )
    usage_count = "SELECT usage_count FROM template_usage"

    answer = await api.delete(f"{BASE}/{doomed}/", headers=ALICE_TOKEN)
    assert answer.status_code == 204, answer.text
    read = await api.get(f"{BASE}/{doomed}/", headers=ALICE_TOKEN)
    assert read.status_code == 404  # gone from the reads by the time the 204 came
    again = await api.delete(f"{BASE}/{doomed}/", headers=ALICE_TOKEN)
    assert again.status_code == 404

    await projected(stack)
    assert set(rows_of(stack, doomed).values()) == {0}, rows_of(stack, doomed)
    assert stored_events(stack, doomed) == 0
    # The relay purges the messages once every read model has applied the deletion.
    await wait_for_value(lambda: stream_messages(bus, doomed), lambda n: n == 0, 15)
    assert await stream_messages(bus, kept) == 4  # the other task's messages stay
    assert rows_of(stack, kept)["tasks"] == 1
    # The statistics keep counting it, and the template its use (decided: docs/read-models.md).
    with_stats = stack.rows(statistics.replace("%s", f"'{doomed}'"))
    assert with_stats == [("completed", 7, "alice", "0.0012", 2, 1, 20)]
    assert stack.rows(usage_count) == [(2,)]

    settings = Settings(home=tmp_path, database_url=stack.database_url)
    assert cli.replay(settings, "all", verify=True) == 0
    out = capsys.readouterr().out
    assert out.count("verified") == len(stack.runners)
    assert "live" not in out  # no difference reported

    assert cli.audit(settings, str(doomed)) == 0  # the deletion record: who, what, when
    record = capsys.readouterr().out
    assert f"deleted task {doomed} by alice (user): summary, completed" in record
    assert "Text." not in record  # no user content: neither the config
    assert "done" not in record  # nor the result
    assert purge_command.list_deletions(settings) == 0  # `agenttasks audit --deletions`
    assert f"deleted task {doomed} by alice (user)" in capsys.readouterr().out


async def test_a_task_not_finished_is_409_and_another_users_task_is_404(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    running = run(stack.commands, ALICE, "pending")
    stack.commands.start(running, 1, "w")
    finished = run(stack.commands, ALICE, "cancelled")
    await projected(stack)

    refused = await api.delete(f"{BASE}/{running}/", headers=ALICE_TOKEN)
    assert refused.status_code == 409
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "only a finished task can be deleted; this one is running" in refused.json()["detail"]

    hidden = await api.delete(f"{BASE}/{finished}/", headers=BOB)
    assert hidden.status_code == 404
    assert hidden.json()["detail"] == (
        await api.delete(f"{BASE}/{UUID(int=1)}/", headers=BOB)
    ).json()["detail"].replace(str(UUID(int=1)), str(finished))  # same as a task that is not
    assert stored_events(stack, finished) == 4

    by_admin = await api.delete(f"{BASE}/{finished}/", headers=ADMIN)
    assert by_admin.status_code == 204
    assert stored_events(stack, running) == 2
    await wait_until(lambda: rows_of(stack, finished)["tasks"] == 0)
