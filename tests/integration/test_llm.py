"""The OpenAI-compatible adapter against a loopback server speaking the same API."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from agenttasks.settings import SettingsError
from agenttasks.workers.llm import LlmError, OpenAIModel, model_from_env
from tests.conftest import free_port
from tests.fakes.llm_server import garbage, reply, serve_llm, slow, status
from tests.waiting import wait_until


def model_for(base_url: str, key: str = "test-key", seconds: float = 10.0) -> OpenAIModel:
    return OpenAIModel(api_key=key, base_url=base_url, model="fake-gpt", timeout=seconds)


async def failure_of(base_url: str, *, key: str = "test-key", seconds: float = 10.0) -> LlmError:
    """The LlmError one call fails with."""
    model = model_for(base_url, key, seconds)
    try:
        with pytest.raises(LlmError) as caught:
            await model.complete("s", "p", max_tokens=100)
    finally:
        await model.aclose()
    return caught.value


async def test_a_streamed_answer_arrives_in_order_with_its_usage() -> None:
    async with serve_llm() as fake:
        fake.script(reply("one two three four five"))
        model = model_for(fake.base_url)
        pieces: list[str] = []
        completion = await model.complete(
            "system", "the prompt", max_tokens=100, on_text=pieces.append
        )
        await model.aclose()
    assert completion.text == "one two three four five"
    assert pieces == ["one", " two", " three", " four", " five"]
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (2, 5)
    assert (completion.model, completion.finish_reason) == ("fake-gpt", "stop")
    [request] = fake.requests
    assert (request.model, request.stream, request.include_usage) == ("fake-gpt", True, True)
    assert request.messages == [
        {"role": "system", "content": "system"},
        {"role": "user", "content": "the prompt"},
    ]
    assert fake.completions[0]["max_tokens"] == 100


async def test_max_tokens_reaches_the_server() -> None:
    async with serve_llm() as fake:
        model = model_for(fake.base_url)
        await model.complete("s", "a prompt about turbines", max_tokens=64)
        await model.aclose()
    assert fake.requests[0].max_tokens == 64


async def test_usage_is_none_when_the_server_does_not_report_it() -> None:
    async with serve_llm() as fake:
        fake.script(reply("an answer without usage", usage=False))
        model = model_for(fake.base_url)
        completion = await model.complete("s", "p", max_tokens=100)
        await model.aclose()
    assert completion.text == "an answer without usage"
    assert completion.usage is None


@pytest.mark.parametrize(
    ("code", "kind", "transient"),
    [(429, "rate_limited", True), (500, "server_error", True), (503, "server_error", True),
     (408, "timeout", True), (409, "server_error", True),
     (400, "bad_request", False), (401, "auth", False), (403, "auth", False),
     (404, "bad_request", False), (422, "bad_request", False)],
)  # fmt: skip
async def test_errors_say_whether_a_retry_may_help(code: int, kind: str, transient: bool) -> None:
    async with serve_llm() as fake:
        fake.script(status(code, retry_after=2 if code == 429 else None))
        error = await failure_of(fake.base_url)
    assert (error.kind, error.transient) == (kind, transient)
    assert error.retry_after == (2.0 if code == 429 else None)
    assert f"HTTP {code}" in str(error)
    assert len(fake.requests) == 1  # the SDK did not retry on its own


async def test_retry_after_ms_is_preferred_over_retry_after() -> None:
    async with serve_llm() as fake:
        fake.script(status(429, retry_after=7, retry_after_ms=1500))
        error = await failure_of(fake.base_url)
    assert (error.kind, error.retry_after) == ("rate_limited", 1.5)


async def test_retry_after_as_an_http_date_becomes_seconds() -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    async with serve_llm() as fake:
        fake.script(status(503, retry_after=format_datetime(when, usegmt=True)))
        error = await failure_of(fake.base_url)
    assert error.kind == "server_error"
    assert error.retry_after is not None
    assert 20 < error.retry_after <= 31


async def test_a_wrong_key_is_a_permanent_auth_error() -> None:
    async with serve_llm() as fake:
        error = await failure_of(fake.base_url, key="wrong")
    assert (error.kind, error.transient) == ("auth", False)
    assert "Incorrect API key" in str(error)


async def test_a_model_that_does_not_answer_in_time_is_a_transient_timeout() -> None:
    async with serve_llm() as fake:
        fake.script(slow(seconds_per_chunk=5))
        error = await failure_of(fake.base_url, seconds=0.5)
    assert (error.kind, error.transient) == ("timeout", True)


async def test_an_unreachable_server_is_a_transient_network_error() -> None:
    error = await failure_of(f"http://127.0.0.1:{free_port()}/v1")
    assert (error.kind, error.transient) == ("network", True)


async def test_an_error_event_mid_stream_is_a_transient_server_error() -> None:
    async with serve_llm() as fake:
        fake.script(reply("one two three four five", error_after=2))
        model = model_for(fake.base_url)
        pieces: list[str] = []
        with pytest.raises(LlmError) as caught:
            await model.complete("s", "p", max_tokens=100, on_text=pieces.append)
        await model.aclose()
    assert pieces == ["one", " two"]
    assert (caught.value.kind, caught.value.transient) == ("server_error", True)
    assert "crashed mid-answer" in str(caught.value)


async def test_a_stream_that_is_not_json_is_a_server_error() -> None:
    async with serve_llm() as fake:
        fake.script(garbage())
        error = await failure_of(fake.base_url)
    assert (error.kind, error.transient) == ("server_error", True)


async def test_an_answer_without_text_is_an_empty_error() -> None:
    async with serve_llm() as fake:
        fake.script(reply("  "))
        error = await failure_of(fake.base_url)
    assert (error.kind, error.transient) == ("empty", True)


async def test_cancelling_a_call_closes_its_stream_on_the_server() -> None:
    async with serve_llm() as fake:
        fake.script(slow(seconds_per_chunk=0.05))
        model = model_for(fake.base_url)
        pieces: list[str] = []
        call = asyncio.create_task(model.complete("s", "p", max_tokens=100, on_text=pieces.append))
        await wait_until(lambda: len(pieces) >= 3)
        assert fake.open_streams == 1
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await wait_until(lambda: fake.open_streams == 0, within=5)
        await model.aclose()
    assert fake.streams_cut_by_client == 1
    assert len(pieces) < 500


def test_without_a_key_there_is_no_model() -> None:
    assert model_from_env({}) is None
    assert model_from_env({"OPENAI_API_KEY": "  ", "AGENTTASKS_MODEL": "x"}) is None


def test_a_bad_model_setting_is_named_in_the_error() -> None:
    with pytest.raises(SettingsError, match="AGENTTASKS_LLM_TIMEOUT"):
        model_from_env({"OPENAI_API_KEY": "k", "AGENTTASKS_LLM_TIMEOUT": "soon"})
    with pytest.raises(SettingsError, match="OPENAI_BASE_URL"):
        model_from_env({"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": "localhost:11434"})


async def test_the_model_from_the_environment_talks_to_the_configured_server() -> None:
    async with serve_llm() as fake:
        env = {"OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": fake.base_url,
               "AGENTTASKS_MODEL": "fake-gpt", "AGENTTASKS_LLM_TIMEOUT": "1",
               "AGENTTASKS_JWT_SECRET": "short"}  # fmt: skip
        model = model_from_env(env)  # an unrelated bad setting does not stop the model
        assert model is not None
        assert (model.engine, model.model) == ("openai", "fake-gpt")
        completion = await model.complete("s", "offshore wind turbines", max_tokens=100)
        fake.script(slow(seconds_per_chunk=5))
        with pytest.raises(LlmError) as caught:  # the 1 s timeout from the environment
            await model.complete("s", "p", max_tokens=100)
        await model.aclose()
    assert "offshore" in completion.text
    assert fake.requests[0].model == "fake-gpt"
    assert caught.value.kind == "timeout"


async def test_the_default_model_is_gpt_4o_mini() -> None:
    model = model_from_env({"OPENAI_API_KEY": "k"})
    assert model is not None
    await model.aclose()
    assert model.model == "gpt-4o-mini"


async def test_the_fake_lists_its_model() -> None:
    async with serve_llm() as fake, httpx.AsyncClient() as client:
        response = await client.get(f"{fake.base_url}/models")
    assert response.json()["data"][0]["id"] == "fake-gpt"
