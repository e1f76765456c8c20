"""Each task type end to end: created through the commands, run by a worker on real NATS and
Postgres, reading pages from a loopback site and asking a loopback OpenAI-compatible model, or
working offline when no model is configured."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from agenttasks.application.tasks import Actor
from agenttasks.domain.task import Task
from agenttasks.workers.llm import OpenAIModel
from agenttasks.workers.offline.text import word_count
from agenttasks.workers.retry_policy import Backoff
from tests.fakes.llm_server import FakeLlm, reply, serve_llm, slow, status
from tests.fakes.websites import Site, serve_site
from tests.integration.stack import Stack, running_stack
from tests.integration.worker_harness import (
    create,
    events,
    finished,
    kinds,
    running_worker,
    settled,
    with_options,
)
from tests.waiting import wait_until

LONG_TEXT = " ".join(
    f"Sentence number {i} talks about {'batteries' if i % 3 else 'solar panels'} and the grid."
    for i in range(60)
)


@asynccontextmanager
async def world(
    database_url: str, nats: Any, *, model: bool = False, **worker: Any
) -> AsyncIterator[tuple[Stack, Site, FakeLlm | None]]:
    async with (
        serve_site() as site,
        serve_llm() as fake,
        running_stack(database_url, nats) as stack,
    ):
        llm = (
            OpenAIModel(api_key="test-key", base_url=fake.base_url, model="fake-gpt")
            if model
            else None
        )
        async with running_worker(stack, llm=llm, **worker):
            yield stack, site, fake if model else None
        if llm is not None:
            await llm.aclose()


async def test_summary_offline_reads_text_and_pages_and_stays_within_max_length(
    database_url, nats_server
) -> None:
    async with world(database_url, nats_server) as (stack, site, _):
        config = {"content": LONG_TEXT, "urls": [site.url("/solar")], "max_length": 40}
        task_id = create(stack, "summary", config)
        done = await finished(stack, task_id)
        history = kinds(stack, task_id)
    result = done.result_data
    assert done.status == "completed", done.error_message
    assert result["engine"] == "offline"
    assert result["model"] is None
    assert result["usage"] is None
    assert 0 < result["word_count"] <= 40 == config["max_length"]
    assert [s["url"] for s in result["sources"]] == [None, site.url("/solar")]
    assert result["sources"][1]["title"].startswith("Solar power")
    assert history[:2] == ["created", "started"]
    assert history[-1] == "completed"
    assert "progress" in history


async def test_summary_with_a_model_streams_partial_results_in_batches_and_records_usage(
    database_url, nats_server
) -> None:
    async with world(database_url, nats_server, model=True) as (stack, site, fake):
        fake.script(reply(" ".join(f"word{i}" for i in range(60)), chunk_delay=0.02))
        task_id = create(stack, "summary", {"urls": [site.url("/wind")], "max_length": 100})
        done = await finished(stack, task_id)
        history = events(stack, task_id)
    result = done.result_data
    assert done.status == "completed", done.error_message
    assert (result["engine"], result["model"]) == ("openai", "fake-gpt")
    assert result["usage"]["completion_tokens"] == 60
    assert result["usage"]["prompt_tokens"] > 0
    partials = [e.data["partial"] for e in history if isinstance(e, Task.ResultRecorded)]
    assert 1 < len(partials) < 60  # batched: never one event per token
    assert "".join(p["text"] for p in partials) == result["summary"]
    offsets = [p["offset"] for p in partials]
    assert offsets == sorted(offsets)
    assert offsets[0] == 0
    assert "offshore" in fake.completions[0]["messages"][-1]["content"]


async def test_research_answers_each_question_citing_the_sources(database_url, nats_server) -> None:
    async with world(database_url, nats_server) as (stack, site, _):
        config = {
            "topic": "renewable energy",
            "urls": [site.url("/solar"), site.url("/wind")],
            "questions": [
                "How much did solar module costs fall?",
                "Why build wind farms offshore?",
            ],
        }
        task_id = create(stack, "research", config)
        done = await finished(stack, task_id)
    result = done.result_data
    assert done.status == "completed", done.error_message
    first, second = result["answers"]
    assert "ninety percent" in first["answer"]
    assert first["sources"][0] == site.url("/solar")
    assert "steadier winds" in second["answer"]
    assert first["sources"]
    assert second["sources"][0] == site.url("/wind")
    assert result["key_findings"]
    assert result["engine"] == "offline"


async def test_research_with_a_model_asks_it_once_per_question(database_url, nats_server) -> None:
    async with world(database_url, nats_server, model=True) as (stack, site, fake):
        config = {
            "topic": "wind",
            "urls": [site.url("/wind")],
            "questions": ["What is a nacelle for?"],
        }
        task_id = create(stack, "research", config)
        done = await finished(stack, task_id)
    assert done.status == "completed", done.error_message
    assert done.result_data["answers"][0]["answer"].startswith("# Model answer")
    assert len(fake.completions) == 1
    assert "nacelle" in fake.completions[0]["messages"][-1]["content"]


async def test_content_generation_offline_is_an_honest_outline(database_url, nats_server) -> None:
    async with world(database_url, nats_server) as (stack, _, _):
        config = {
            "topic": "Heat pumps",
            "content_type": "blog_post",
            "length": 200,
            "keywords": ["efficiency", "cost"],
        }
        task_id = create(stack, "content_generation", config)
        done = await finished(stack, task_id)
    result = done.result_data
    assert done.status == "completed", done.error_message
    assert result["engine"] == "offline"
    assert "no language model" in result["content"]
    assert result["keywords_used"] == ["efficiency", "cost"]
    assert result["content"].startswith("# ")
    assert result["word_count"] == word_count(result["content"])


async def test_content_generation_with_a_model_uses_its_text(database_url, nats_server) -> None:
    async with world(database_url, nats_server, model=True) as (stack, _, fake):
        fake.script(reply("# Heat pumps explained\n\nHeat pumps move heat with great efficiency."))
        task_id = create(
            stack, "content_generation", {"topic": "Heat pumps", "keywords": ["efficiency"]}
        )
        done = await finished(stack, task_id)
    assert done.result_data["title"] == "Heat pumps explained"
    assert done.result_data["keywords_used"] == ["efficiency"]
    assert done.result_data["engine"] == "openai"


async def test_data_analysis_computes_exact_figures(database_url, nats_server) -> None:
    async with world(database_url, nats_server) as (stack, _, _):
        data = {"sales": [10, 12, 14, 16, 100], "cost": [5, 6, 7, 8, 9]}
        task_id = create(stack, "data_analysis", {"data": data, "analysis_type": "trend"})
        done = await finished(stack, task_id)
    result = done.result_data
    assert done.status == "completed", done.error_message
    sales = result["statistics"]["sales"]
    assert (sales["mean"], sales["median"], sales["min"], sales["max"]) == (30.4, 14.0, 10.0, 100.0)
    assert sales["outliers"] == [100.0]
    assert result["trend"]["cost"]["slope"] == 1.0
    assert "narrative" not in result
    assert result["engine"] == "offline"


async def test_data_analysis_with_a_model_adds_a_narrative(database_url, nats_server) -> None:
    async with world(database_url, nats_server, model=True) as (stack, _, fake):
        fake.script(reply("Sales rose steadily until one outlier."))
        task_id = create(stack, "data_analysis", {"data": [{"sales": 1}, {"sales": 3}]})
        done = await finished(stack, task_id)
    assert done.result_data["narrative"] == "Sales rose steadily until one outlier."
    assert done.result_data["statistics"]["sales"]["mean"] == 2.0


async def test_custom_chain_passes_outputs_from_step_to_step(database_url, nats_server) -> None:
    async with world(database_url, nats_server) as (stack, site, _):
        steps = [
            {"action": "fetch", "url": site.url("/solar"), "name": "read"},
            {"action": "summarize", "max_length": 30},
            {"action": "extract", "input": "{{steps.1}}", "instruction": "batteries at night"},
            "When is the peak in demand?",
        ]
        task_id = create(stack, "custom", {"steps": steps})
        done = await finished(stack, task_id)
        history = kinds(stack, task_id)
    result = done.result_data
    assert done.status == "completed", done.error_message
    names = [s["name"] for s in result["steps"]]
    assert names == ["read", "2. summarize", "3. extract", "4. prompt"]
    assert "photovoltaic" in result["steps"][0]["output"]
    assert word_count(result["steps"][1]["output"]) <= 30
    assert "batteries" in result["steps"][2]["output"]
    assert result["final"].startswith("[offline engine: no language model")
    assert "evening peak" in result["final"]
    assert history.count("progress") >= 4


async def test_a_custom_analyze_step_without_numbers_fails_saying_why(
    database_url, nats_server
) -> None:
    async with world(database_url, nats_server) as (stack, _, _):
        steps = [{"action": "analyze", "input": '{"city": ["Oslo", "Bergen"]}'}]
        task_id = create(stack, "custom", {"steps": steps})
        done = await finished(stack, task_id)
        history = kinds(stack, task_id)
    assert (done.status, done.error_kind) == ("failed", "invalid_input")
    assert "no numeric values" in done.error_message
    assert "retried" not in history


async def test_a_failed_source_is_an_error_update_and_the_task_goes_on(
    database_url, nats_server
) -> None:
    async with world(database_url, nats_server) as (stack, site, _):
        task_id = create(stack, "summary", {"urls": [site.url("/nope"), site.url("/wind")]})
        done = await finished(stack, task_id)
        notes = [e for e in events(stack, task_id) if isinstance(e, Task.Noted)]
    assert done.status == "completed"
    assert [(n.level, n.data["kind"]) for n in notes] == [("error", "http_status")]
    assert [s["url"] for s in done.result_data["sources"]] == [site.url("/wind")]


async def test_urls_refused_by_the_ssrf_guard_fail_the_task_without_retrying(
    database_url, nats_server
) -> None:
    async with world(database_url, nats_server, allowed_hosts=()) as (stack, site, _):
        task_id = create(
            stack, "summary", {"urls": [site.url("/solar"), "http://169.254.169.254/latest/"]}
        )
        done = await finished(stack, task_id)
        history = kinds(stack, task_id)
    assert (done.status, done.error_kind) == ("failed", "no_usable_source")
    assert history.count("info") == 2
    assert "retried" not in history
    assert site.hits == {}


async def test_a_rate_limited_model_is_retried_after_its_retry_after(
    database_url, nats_server
) -> None:
    options = with_options(backoff=Backoff(base=0.05))
    async with world(database_url, nats_server, model=True, options=options) as (stack, _, fake):
        fake.script(status(429, retry_after=1), status(500))
        task_id = create(stack, "content_generation", {"topic": "tides"})
        done = await finished(stack, task_id)
        history = events(stack, task_id)
    assert done.status == "completed"
    assert done.attempt == 3
    failures = [(e.error_kind, e.retryable) for e in history if isinstance(e, Task.Failed)]
    assert failures == [("rate_limited", True), ("server_error", True)]
    first_retry = next(e for e in history if isinstance(e, Task.Retried))
    first_failure = next(e for e in history if isinstance(e, Task.Failed))
    assert (first_retry.not_before - first_failure.timestamp).total_seconds() >= 0.99


async def test_a_rejected_key_fails_the_task_without_retrying(database_url, nats_server) -> None:
    async with serve_llm() as fake, running_stack(database_url, nats_server) as stack:
        llm = OpenAIModel(api_key="wrong", base_url=fake.base_url, model="fake-gpt")
        async with running_worker(stack, llm=llm):
            task_id = create(stack, "content_generation", {"topic": "tides"})
            done = await finished(stack, task_id)
        await llm.aclose()
    assert (done.status, done.error_kind, done.attempt) == ("failed", "auth", 1)


async def test_cancel_in_the_middle_of_a_slow_stream_closes_the_model_connection(
    database_url, nats_server
) -> None:
    async with world(database_url, nats_server, model=True) as (stack, _, fake):
        fake.script(slow(seconds_per_chunk=0.05))
        task_id = create(stack, "content_generation", {"topic": "tides"})
        await wait_until(lambda: fake.open_streams == 1)
        await wait_until(lambda: "result" in kinds(stack, task_id))  # text is streaming
        stack.commands.cancel(Actor("ann"), task_id)
        await wait_until(lambda: fake.open_streams == 0, within=1.0)
        await settled(stack)  # the attempt has ended: a wrong late event would be stored
        history = kinds(stack, task_id)
    assert fake.streams_cut_by_client == 1
    assert history[-1] == "cancelled"


async def test_a_task_slower_than_its_timeout_fails_as_timed_out(database_url, nats_server) -> None:
    async with world(database_url, nats_server, model=True) as (stack, _, fake):
        fake.script(slow(seconds_per_chunk=0.2))
        task_id = create(stack, "content_generation", {"topic": "tides"}, timeout_seconds=1)
        done = await finished(stack, task_id)
        await wait_until(lambda: fake.open_streams == 0, within=5)
    assert (done.status, done.error_kind) == ("failed", "timeout")
