"""What tasks cost, against the real stack, the fake model and an AGENTTASKS_PRICES file.

Prices: 2.5 USD per million prompt tokens, 1.25 per million cached ones, 10 per million
completion tokens; the fake model counts a token a word, so each figure can be worked out here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import pytest
from psycopg_pool import AsyncConnectionPool

from agenttasks.application.budgets import BudgetCommands, BudgetDefaults
from agenttasks.application.bus_payloads import mapper_for
from agenttasks.application.price_file import read_price_file
from agenttasks.application.tasks import Actor
from agenttasks.application.templates import TaskFromTemplate, TemplateCommands, TemplateDraft
from agenttasks.domain.task import Task
from agenttasks.projections.replay import replay
from agenttasks.projections.statistics import statistics_projection
from agenttasks.projections.statistics_queries import StatisticsQueries
from agenttasks.projections.task_queries import TaskFilter, TaskQueries
from agenttasks.projections.tasks import task_projection
from agenttasks.projections.template_queries import TemplateQueries
from agenttasks.projections.template_usage import template_usage_projection
from agenttasks.projections.templates import template_projection
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.servers.postgres import EmbeddedPostgres, create_database
from agenttasks.settings import Settings
from agenttasks.workers.llm import OpenAIModel
from tests.fakes.llm_server import MODEL, FakeLlm, reply, serve_llm, usage_of
from tests.integration.stack import Stack, running_stack
from tests.integration.worker_harness import create, events, finished, running_worker

ANN, BOB, ADMIN = Actor("ann"), Actor("bob"), Actor("root", is_admin=True)
INPUT, CACHED, OUTPUT = Decimal("2.5"), Decimal("1.25"), Decimal(10)
PRICES = {MODEL: {"input_per_mtok": 2.5, "cached_input_per_mtok": 1.25, "output_per_mtok": 10}}
NAMES = ("tasks", "templates", "template_usage", "statistics")


def cost(prompt: int, completion: int, cached: int = 0) -> Decimal:
    return ((prompt - cached) * INPUT + cached * CACHED + completion * OUTPUT) / 1_000_000


@pytest.fixture(scope="module")
def module_database(postgres: EmbeddedPostgres) -> str:
    return create_database(postgres.url, "test_cost")


@pytest.fixture(scope="module")
async def stack(module_database: str, module_nats: EmbeddedNats) -> AsyncIterator[Stack]:
    projections = (
        task_projection(),
        template_projection(),
        template_usage_projection(),
        statistics_projection(),
    )
    async with running_stack(module_database, module_nats, projections=projections) as running:
        yield running


@pytest.fixture(scope="module")
async def pool(module_database: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = AsyncConnectionPool(module_database, min_size=1, max_size=2, open=False)
    await pool.open()
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeLlm]:
    async with serve_llm() as server:
        yield server


@pytest.fixture(scope="module")
def priced(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    path: Path = tmp_path_factory.mktemp("prices") / "prices.json"
    path.write_text(json.dumps(PRICES))
    return Settings(database_url=stack.database_url, prices=read_price_file(path))


def model(fake: FakeLlm) -> OpenAIModel:
    return OpenAIModel(api_key="test-key", base_url=fake.base_url, model=MODEL)


def calls_of(stack: Stack, task_id: UUID) -> list[Task.ModelCalled]:
    return [e for e in events(stack, task_id) if isinstance(e, Task.ModelCalled)]


async def projected(stack: Stack) -> None:
    for name in NAMES:
        await stack.projected(name)


async def test_a_chain_costs_the_sum_of_its_calls_at_the_table_prices(
    stack: Stack, fake: FakeLlm, priced: Settings, pool: AsyncConnectionPool
) -> None:
    answers = ["one two three", "four five six seven", "eight nine"]
    fake.script(reply(answers[0]), reply(answers[1], cached_tokens=3), reply(answers[2]))
    steps = ["Name three numbers.", "Name four more numbers.", "Name two more."]
    before = len(fake.requests)
    llm = model(fake)
    try:
        async with running_worker(stack, llm=llm, settings=priced):
            task_id = create(stack, "custom", {"steps": steps}, ANN)
            done = await finished(stack, task_id)
    finally:
        await llm.aclose()
    assert done.status == "completed", done.error_message
    calls = calls_of(stack, task_id)
    prompts = [r.messages[-1]["content"] for r in fake.requests[before:]]
    assert [c.step for c in calls] == [1, 2, 3]
    expected = []
    for call, prompt, answer, cached in zip(calls, prompts, answers, (0, 3, 0), strict=True):
        prompt_tokens, completion_tokens = usage_of(prompt, answer)
        assert (call.prompt_tokens, call.completion_tokens, call.cached_tokens) == (
            prompt_tokens, completion_tokens, cached,
        )  # fmt: skip
        assert Decimal(call.cost_usd or "nan") == cost(prompt_tokens, completion_tokens, cached)
        assert (call.model, call.provider, call.usage) == (MODEL, "127.0.0.1", "reported")
        assert call.price_source == "AGENTTASKS_PRICES"
        assert priced.prices is not None
        assert call.price_version == priced.prices.version
        assert call.latency_ms >= 0
        expected.append(cost(prompt_tokens, completion_tokens, cached))
    await projected(stack)
    view = await TaskQueries(pool).get(ANN, task_id)
    assert view is not None
    assert Decimal(view.cost_usd or "nan") == sum(expected)
    assert view.model_calls == 3
    assert view.unpriced_calls == 0
    assert view.tokens["prompt"] == sum(c.prompt_tokens for c in calls)
    assert view.tokens["completion"] == sum(c.completion_tokens for c in calls)
    assert view.tokens["cached"] == 3
    assert done.result_data is not None
    assert "cost_usd" not in done.result_data  # result_data is as it was


async def test_a_model_with_no_known_price_costs_null_never_zero(
    stack: Stack, fake: FakeLlm, pool: AsyncConnectionPool
) -> None:
    # No AGENTTASKS_PRICES, and genai-prices has never heard of the fake model.
    llm = model(fake)
    try:
        async with running_worker(stack, llm=llm):
            task_id = create(stack, "summary", {"content": "Bees dance.", "max_length": 20}, BOB)
            done = await finished(stack, task_id)
    finally:
        await llm.aclose()
    assert done.status == "completed", done.error_message
    [call] = calls_of(stack, task_id)
    assert (call.cost_usd, call.price_source, call.price_version) == (None, "unknown", None)
    assert call.prompt_tokens > 0
    await projected(stack)
    view = await TaskQueries(pool).get(BOB, task_id)
    assert view is not None
    assert (view.cost_usd, view.unpriced_calls, view.model_calls) == (None, 1, 1)


async def test_absurd_usage_is_capped_or_refused_and_recorded_as_such(
    stack: Stack, fake: FakeLlm, priced: Settings, pool: AsyncConnectionPool
) -> None:
    fake.script(
        reply("a b", usage_report={"prompt_tokens": -500, "completion_tokens": 3}),
        reply("c d", usage_report={"prompt_tokens": 10**15, "completion_tokens": 2}),
        reply("e f", usage=False),
    )
    llm = OpenAIModel(
        api_key="test-key", base_url=fake.base_url, model=MODEL, max_reported_tokens=1_000_000
    )
    try:
        async with running_worker(stack, llm=llm, settings=priced):
            task_id = create(stack, "custom", {"steps": ["One.", "Two.", "Three."]}, BOB)
            done = await finished(stack, task_id)
    finally:
        await llm.aclose()
    assert done.status == "completed", done.error_message
    negative, huge, missing = calls_of(stack, task_id)
    assert (negative.usage, negative.prompt_tokens, negative.cost_usd) == ("invalid", 0, None)
    assert (huge.usage, huge.prompt_tokens) == ("capped", 1_000_000)
    assert Decimal(huge.cost_usd or "nan") == cost(1_000_000, 2)
    assert (missing.usage, missing.prompt_tokens, missing.cost_usd) == ("missing", 0, None)
    await projected(stack)
    view = await TaskQueries(pool).get(BOB, task_id)
    assert view is not None
    assert (view.cost_usd, view.unpriced_calls) == (None, 2)  # two calls of unknown cost


async def test_the_offline_engine_records_zero_cost_and_says_so(
    stack: Stack, pool: AsyncConnectionPool
) -> None:
    async with running_worker(stack):
        task_id = create(stack, "summary", {"content": "Owls hoot at night.", "max_length": 10})
        done = await finished(stack, task_id)
    assert done.status == "completed", done.error_message
    [call] = calls_of(stack, task_id)
    assert (call.model, call.provider, call.cost_usd) == ("offline", "offline", "0")
    assert call.price_source == "offline engine"
    await projected(stack)
    view = await TaskQueries(pool).get(ANN, task_id)
    assert view is not None
    assert (view.cost_usd, view.model_calls) == ("0", 1)


async def test_statistics_by_user_type_template_and_day_match_a_replay(
    stack: Stack, fake: FakeLlm, priced: Settings, pool: AsyncConnectionPool
) -> None:
    templates = TemplateCommands(stack.store, stack.commands)
    template_id = templates.create(
        ANN, TemplateDraft("Facts", "custom", default_config={"steps": ["Two facts."]})
    ).template_id
    fake.script(reply("fact one"), reply("fact two"))
    llm = model(fake)
    try:
        async with running_worker(stack, llm=llm, settings=priced):
            ids = [
                templates.create_task(ANN, template_id, TaskFromTemplate()).task_id for _ in "ab"
            ]
            for task_id in ids:
                assert (await finished(stack, task_id)).status == "completed"
    finally:
        await llm.aclose()
    await projected(stack)
    tasks = TaskQueries(pool)
    everyone = await StatisticsQueries(pool).statistics(ADMIN, everyone=True, since=None)
    assert everyone.cost is not None
    _, every_task = await tasks.page(ADMIN, TaskFilter(), "-created_at", 0, 1000)
    # The sums are those of every priced call, a task of unknown cost's included.
    every_call = [c for t in every_task for c in calls_of(stack, t.id)]
    priced_sum = sum(Decimal(c.cost_usd) for c in every_call if c.cost_usd is not None)
    assert everyone.cost.total.unpriced_calls == sum(1 for c in every_call if c.cost_usd is None)
    assert Decimal(everyone.cost.total.cost_usd) == priced_sum
    assert everyone.cost.total.tasks == len(every_task)
    assert {g.key for g in everyone.cost.by_user} == {"ann", "bob"}
    assert sum(Decimal(g.cost_usd) for g in everyone.cost.by_type) == priced_sum
    assert sum(g.model_calls for g in everyone.cost.by_day) == everyone.cost.total.model_calls
    by_template = {g.key: g for g in everyone.cost.by_template}
    template_tasks = [t for t in every_task if t.template_id == template_id]
    assert by_template[str(template_id)].tasks == 2
    assert Decimal(by_template[str(template_id)].cost_usd) == sum(
        Decimal(t.cost_usd or "nan") for t in template_tasks
    )
    mine = await StatisticsQueries(pool).statistics(BOB, everyone=False, since=None)
    assert mine.cost is not None
    assert [g.key for g in mine.cost.by_user] == ["bob"]
    template = await TemplateQueries(pool).get(ANN, template_id)
    assert template is not None
    assert Decimal(template.usage.average_cost_usd or "nan") == (
        sum((Decimal(t.cost_usd or "nan") for t in template_tasks), Decimal(0)) / 2
    ).quantize(Decimal("1e-8"))

    mapper = mapper_for(stack.store)
    for projection in (task_projection(), template_usage_projection(), statistics_projection()):
        report = replay(projection, stack.store, mapper, stack.database_url, verify=True)
        assert report.differences == [], projection.name


async def test_a_replay_verify_after_a_budget_change_finds_no_difference(
    stack: Stack, fake: FakeLlm, priced: Settings
) -> None:
    # Before: a Budget.BudgetSet is never published, so the live tracking stayed before it and
    # `replay --verify` waited out its deadline, then reported "the live tables are at N, the
    # rebuild at N+1" (a difference) whenever the newest stored event was a budget change.
    fake.script(reply("one two"))
    async with running_worker(stack, llm=model(fake), settings=priced):
        task_id = create(stack, "custom", {"steps": ["Say two."]}, BOB)
        await finished(stack, task_id)
    await projected(stack)
    BudgetCommands(stack.store, BudgetDefaults()).set(ADMIN, "bob", "5/day", None)
    mapper = mapper_for(stack.store)
    report = replay(
        statistics_projection(), stack.store, mapper, stack.database_url, verify=True,
        verify_wait_seconds=5,
    )  # fmt: skip
    assert report.differences == []
