"""Workers cap everything one task can multiply (issue 11, finding 4).

Each cap at its limit and one over, on real Postgres and NATS with the loopback site and model:
text substituted into a chain step and into a whole chain, a step's output, a prompt, every
model call's max_tokens, a page's bytes and its extraction time; and hostile pages (a quadratic
`<title>`, one slow to extract) never stop a worker renewing its lease.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest

from agenttasks.bus.connection import connect
from agenttasks.bus.messages import STREAM
from agenttasks.domain.task import Task
from agenttasks.settings import Settings, SettingsError
from agenttasks.workers.agents import custom
from agenttasks.workers.consumers import consumer_name
from agenttasks.workers.fetch import Fetcher, FetchError
from agenttasks.workers.limits import Limits
from agenttasks.workers.llm import OpenAIModel
from tests.fakes.llm_server import FakeLlm, serve_llm
from tests.fakes.websites import Site, serve_site
from tests.integration.api_client import bearer, running_api
from tests.integration.stack import Stack, running_stack
from tests.integration.worker_harness import create, finished, kinds, running_worker, with_options

DEFAULTS = Limits.from_settings(Settings())
PLAIN = "Plain text notes about batteries."  # the text of the site's /plain page


@asynccontextmanager
async def world(
    database_url: str, nats: Any
) -> AsyncIterator[tuple[Stack, Site, FakeLlm, OpenAIModel]]:
    """The stack, the site and the model; each test starts the workers it needs."""
    async with (
        serve_site() as site,
        serve_llm() as fake,
        running_stack(database_url, nats) as stack,
    ):
        llm = OpenAIModel(api_key="test-key", base_url=fake.base_url, model="fake-gpt")
        try:
            yield stack, site, fake, llm
        finally:
            await llm.aclose()


async def run_task(stack: Stack, task_type: str, config: dict[str, Any]) -> Task:
    return await finished(stack, create(stack, task_type, config))


def assert_too_large(done: Task, variable: str) -> None:
    assert (done.status, done.error_kind) == ("failed", "input_too_large"), done.error_message
    assert f"AGENTTASKS_{variable}" in (done.error_message or "")


# Chains.


async def test_text_substituted_into_one_step_is_capped_at_its_limit(
    database_url, nats_server
) -> None:
    refs = "{{steps.1}}" * 10
    async with world(database_url, nats_server) as (stack, site, _, _):
        steps: list[Any] = [
            {"action": "fetch", "url": site.url("/plain")},
            {"action": "extract", "input": refs},
        ]
        limits = replace(DEFAULTS, max_step_text_chars=10 * len(PLAIN))
        async with running_worker(stack, limits=limits):
            at_limit = await run_task(stack, "custom", {"steps": steps})
        async with running_worker(stack, limits=replace(limits, max_step_text_chars=10 * len(PLAIN) - 1)):  # fmt: skip
            over = await run_task(stack, "custom", {"steps": steps})
    assert at_limit.status == "completed", at_limit.error_message
    assert_too_large(over, "MAX_STEP_TEXT_CHARS")
    assert "step 2" in (over.error_message or "")


async def test_text_substituted_into_a_whole_chain_is_capped_at_its_limit(
    database_url, nats_server
) -> None:
    async with world(database_url, nats_server) as (stack, site, _, _):
        steps: list[Any] = [{"action": "fetch", "url": site.url("/plain")}] + [
            {"action": "extract", "input": "{{steps.1}}"} for _ in range(3)
        ]
        limits = replace(DEFAULTS, max_chain_text_chars=3 * len(PLAIN))
        async with running_worker(stack, limits=limits):
            at_limit = await run_task(stack, "custom", {"steps": steps})
        async with running_worker(stack, limits=replace(limits, max_chain_text_chars=3 * len(PLAIN) - 1)):  # fmt: skip
            over = await run_task(stack, "custom", {"steps": steps})
    assert at_limit.status == "completed", at_limit.error_message
    assert_too_large(over, "MAX_CHAIN_TEXT_CHARS")
    assert "step 4" in (over.error_message or "")


async def test_the_output_a_step_hands_on_is_capped_at_its_limit(database_url, nats_server) -> None:
    async with world(database_url, nats_server) as (stack, site, _, _):
        steps = [{"action": "fetch", "url": site.url("/plain")}]
        async with running_worker(stack, limits=replace(DEFAULTS, max_step_output_chars=len(PLAIN))):  # fmt: skip
            at_limit = await run_task(stack, "custom", {"steps": steps})
        async with running_worker(stack, limits=replace(DEFAULTS, max_step_output_chars=len(PLAIN) - 1)):  # fmt: skip
            over = await run_task(stack, "custom", {"steps": steps})
    assert at_limit.status == "completed", at_limit.error_message
    assert at_limit.result_data["final"] == PLAIN
    assert_too_large(over, "MAX_STEP_OUTPUT_CHARS")


async def test_a_chain_multiplying_a_big_page_fails_as_too_large_and_the_worker_goes_on(
    database_url, nats_server
) -> None:
    # 150,000 characters referenced 100 times: 15 MB in one step before the cap, 5 GB with
    # a 5 MB page; with the default caps it stops at the second reference.
    async with world(database_url, nats_server) as (stack, site, _, _):
        async with running_worker(stack):
            big = await run_task(
                stack,
                "custom",
                {
                    "steps": [
                        {"action": "fetch", "url": site.url("/big-article")},
                        {"action": "extract", "input": "{{steps.1}}" * 100},
                    ]
                },
            )
            after = await run_task(stack, "custom", {"steps": ["Summarise", "Shorter"]})
        history = kinds(stack, big.id)
    assert_too_large(big, "MAX_STEP_TEXT_CHARS")
    assert "retried" not in history
    assert after.status == "completed", after.error_message


# Prompts and max_tokens.


async def test_a_prompt_is_capped_at_its_limit_before_the_model_is_called(
    database_url, nats_server
) -> None:
    size = len(custom.SYSTEM_PROMPT) + len("Say hello")
    async with world(database_url, nats_server) as (stack, _, fake, llm):
        async with running_worker(stack, llm=llm, limits=replace(DEFAULTS, max_prompt_chars=size)):  # fmt: skip
            at_limit = await run_task(stack, "custom", {"steps": ["Say hello"]})
        async with running_worker(stack, llm=llm, limits=replace(DEFAULTS, max_prompt_chars=size - 1)):  # fmt: skip
            over = await run_task(stack, "custom", {"steps": ["Say hello"]})
    assert at_limit.status == "completed", at_limit.error_message
    assert_too_large(over, "MAX_PROMPT_CHARS")
    assert len(fake.requests) == 1, "the over-long prompt never reached the model"


EVERY_TYPE: list[tuple[str, dict[str, Any]]] = [
    ("summary", {"content": "Wind turbines turn moving air into electricity."}),
    ("research", {"topic": "wind", "content": "Offshore wind is steadier than wind on land."}),
    ("content_generation", {"topic": "wind power", "length": 500}),
    ("data_analysis", {"data": {"output": [1, 2, 3, 5]}}),
    ("custom", {"steps": ["Name one fact", {"action": "summarize"}, {"action": "generate"}]}),
]


async def test_every_model_call_of_every_task_type_sends_max_tokens_within_the_cap(
    database_url, nats_server
) -> None:
    cap = 300
    limits = replace(DEFAULTS, max_tokens=cap)
    async with (
        world(database_url, nats_server) as (stack, _, fake, llm),
        running_worker(stack, llm=llm, limits=limits),
    ):
        for task_type, config in EVERY_TYPE:
            before = len(fake.requests)
            done = await run_task(stack, task_type, config)
            assert done.status == "completed", (task_type, done.error_message)
            sent = [r.max_tokens for r in fake.requests[before:]]
            assert sent, f"{task_type} made no model call"
            assert all(n is not None and 0 < n <= cap for n in sent), (task_type, sent)
            # A config may ask for fewer; asking for the cap or one over gets the cap.
            for asked, expected in ((40, 40), (cap, cap), (cap + 1, cap)):
                before = len(fake.requests)
                done = await run_task(stack, task_type, {**config, "max_tokens": asked})
                assert done.status == "completed", (task_type, done.error_message)
                sent = [r.max_tokens for r in fake.requests[before:]]
                assert sent, f"{task_type} made no model call"
                assert set(sent) == {expected}, (task_type, asked, sent)


# Create time: what is obviously too big is refused with our 400.


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"steps": ["x"] * 51}, "length <= 50 - at `task_config.steps`"),
        ({"steps": ["x", "{{steps.1}}" * 101]}, "at most 100"),
        ({"steps": ["x", "use {{steps.2}}"]}, "does not name a step before step 2"),
        ({"steps": ["x"], "max_tokens": 128_001}, "task_config.max_tokens"),
        ({"steps": ["x"], "max_tokens": 0}, "task_config.max_tokens"),
    ],
)
async def test_a_chain_obviously_too_big_is_refused_when_created(
    database_url, nats_server, config: dict[str, Any], fragment: str
) -> None:
    alice = bearer("alice")
    body = {"title": "a chain", "task_type": "custom"}
    async with running_api(database_url, nats_server) as api:
        refused = await api.client.post(
            "/api/v1/utils/ai-tasks/", json={**body, "task_config": config}, headers=alice
        )
        at_limits = await api.client.post(
            "/api/v1/utils/ai-tasks/",
            json={
                **body,
                "task_config": {"steps": ["x"] * 49 + ["{{steps.1}}" * 100], "max_tokens": 128_000},
            },
            headers=alice,
        )
    assert refused.status_code == 400, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert fragment in refused.json()["detail"]
    assert at_limits.status_code == 201, at_limits.text


# Pages: bytes, extraction time, hostile pages.


async def test_a_page_is_capped_at_its_byte_limit() -> None:
    size = len(PLAIN) + 1  # the page ends in a newline
    async with serve_site() as site:
        at_limit = Fetcher(["127.0.0.1"], max_bytes=size)
        over = Fetcher(["127.0.0.1"], max_bytes=size - 1)
        try:
            page = await at_limit.fetch(site.url("/plain"))
            with pytest.raises(FetchError) as caught:
                await over.fetch(site.url("/plain"))
        finally:
            await at_limit.aclose()
            await over.aclose()
    assert page.text == PLAIN
    assert caught.value.kind == "too_large"


async def test_an_extraction_past_its_deadline_is_stopped_and_its_process_replaced() -> None:
    async with serve_site() as site:
        fetcher = Fetcher(["127.0.0.1"], extract_timeout=0.5, extract_processes=1)
        try:
            with pytest.raises(FetchError) as caught:
                await fetcher.fetch(site.url("/slow-to-extract"))
            after = await fetcher.fetch(site.url("/solar"))
        finally:
            await fetcher.aclose()
    assert caught.value.kind == "extraction_timeout"
    assert "0.5 s" in str(caught.value)
    assert fetcher.extraction.replaced == 1
    assert "photovoltaic" in after.text


async def test_the_title_fallback_is_linear_on_a_page_of_unclosed_title_tags() -> None:
    async with serve_site() as site:
        fetcher = Fetcher(["127.0.0.1"], extract_timeout=5.0)
        try:
            page = await fetcher.fetch(site.url("/hostile-title"))
        finally:
            await fetcher.aclose()
    assert "kinetic energy" in page.text
    assert fetcher.extraction.replaced == 0  # well inside its deadline: no child was killed


async def deliveries(stack: Stack, task_type: str) -> int:
    """How many times the type's consumer handed out a message, redeliveries included."""
    bus = await connect(stack.nats.url_for("worker"), "test-lease-check")
    try:
        info = await bus.js.consumer_info(STREAM, consumer_name(task_type, "normal"))
    finally:
        await bus.close()
    # num_redelivered counts only redelivered messages not yet acknowledged; the consumer
    # sequence counts every delivery.
    assert info.delivered is not None
    return int(info.delivered.consumer_seq or 0)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/hostile-title", ("completed", None)),
        ("/slow-to-extract", ("failed", "extraction_timeout")),
    ],
)
async def test_a_worker_keeps_its_lease_while_extracting_a_hostile_page(
    database_url, nats_server, path: str, expected: tuple[str, str | None]
) -> None:
    # Heartbeats every 0.33 s of a 1 s lease; the slow page runs to a 3 s extraction deadline.
    fetcher = Fetcher(["127.0.0.1"], extract_timeout=3.0)
    async with world(database_url, nats_server) as (stack, site, _, _):
        async with running_worker(stack, options=with_options(ack_wait=1.0), fetcher=fetcher):
            done = await run_task(stack, "custom", {"steps": [{"action": "fetch", "url": site.url(path)}]})  # fmt: skip
        handed_out = await deliveries(stack, "custom")
        history = kinds(stack, done.id)
    assert (done.status, done.error_kind) == expected, done.error_message
    assert (done.attempt, handed_out) == (1, 1), "the lease lapsed while the page was extracted"
    assert "retried" not in history


# Settings: each cap is read from its variable, within bounds.


@pytest.mark.parametrize(
    ("variable", "field", "low", "high"),
    [
        ("AGENTTASKS_FETCH_MAX_BYTES", "fetch_max_bytes", 1_000, 50_000_000),
        ("AGENTTASKS_EXTRACT_TIMEOUT", "extract_timeout", 1, 300),
        ("AGENTTASKS_EXTRACT_PROCESSES", "extract_processes", 1, 32),
        ("AGENTTASKS_MAX_TOKENS", "max_tokens", 16, 128_000),
        ("AGENTTASKS_MAX_PROMPT_CHARS", "max_prompt_chars", 1_000, 2_000_000),
        ("AGENTTASKS_MAX_STEP_TEXT_CHARS", "max_step_text_chars", 1_000, 10_000_000),
        ("AGENTTASKS_MAX_CHAIN_TEXT_CHARS", "max_chain_text_chars", 1_000, 100_000_000),
        ("AGENTTASKS_MAX_STEP_OUTPUT_CHARS", "max_step_output_chars", 1_000, 10_000_000),
    ],
)
def test_each_cap_is_a_bounded_setting(variable: str, field: str, low: int, high: int) -> None:
    for value in (low, high):
        assert getattr(Settings.from_env({variable: str(value)}), field) == value
    for value in (low - 1, high + 1):
        with pytest.raises(SettingsError, match=variable):
            Settings.from_env({variable: str(value)})
