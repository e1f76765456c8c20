"""The OpenAI-compatible adapter against a loopback server speaking the same API."""

from __future__ import annotations

import asyncio

import pytest

from agenttasks.workers.llm import LlmError, OpenAIModel
from tests.fakes.llm_server import reply, serve_llm, slow, status
from tests.waiting import wait_until


def model_for(base_url: str, key: str = "test-key", timeout: float = 10.0) -> OpenAIModel:
    return OpenAIModel(api_key=key, base_url=base_url, model="fake-gpt", timeout=timeout)


async def test_a_streamed_answer_arrives_in_order_with_its_usage() -> None:
    async with serve_llm() as fake:
        fake.script(reply("one two three four five"))
        model = model_for(fake.base_url)
        pieces: list[str] = []
        completion = await model.complete("system", "the prompt", on_text=pieces.append)
        await model.aclose()
    assert completion.text == "one two three four five"
    assert pieces == ["one", " two", " three", " four", " five"]
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (2, 5)
    assert fake.completions[0]["stream"] is True
    assert fake.completions[0]["messages"][0] == {"role": "system", "content": "system"}


@pytest.mark.parametrize(
    ("code", "kind", "transient"),
    [(429, "rate_limited", True), (500, "server_error", True), (503, "server_error", True),
     (400, "bad_request", False), (404, "bad_request", False)],
)  # fmt: skip
async def test_errors_say_whether_a_retry_may_help(code: int, kind: str, transient: bool) -> None:
    async with serve_llm() as fake:
        fake.script(status(code, retry_after=2 if code == 429 else None))
        model = model_for(fake.base_url)
        with pytest.raises(LlmError) as caught:
            await model.complete("s", "p")
        await model.aclose()
    assert (caught.value.kind, caught.value.transient) == (kind, transient)
    assert caught.value.retry_after == (2.0 if code == 429 else None)
    assert len(fake.completions) == 1  # the SDK did not retry on its own


async def test_a_wrong_key_is_a_permanent_auth_error() -> None:
    async with serve_llm() as fake:
        model = model_for(fake.base_url, key="wrong")
        with pytest.raises(LlmError) as caught:
            await model.complete("s", "p")
        await model.aclose()
    assert (caught.value.kind, caught.value.transient) == ("auth", False)


async def test_a_model_that_does_not_answer_in_time_is_a_transient_timeout() -> None:
    async with serve_llm() as fake:
        fake.script(slow(seconds_per_chunk=5))
        model = model_for(fake.base_url, timeout=0.5)
        with pytest.raises(LlmError) as caught:
            await model.complete("s", "p")
        await model.aclose()
    assert (caught.value.kind, caught.value.transient) == ("timeout", True)


async def test_cancelling_a_call_closes_its_stream_on_the_server() -> None:
    async with serve_llm() as fake:
        fake.script(slow(seconds_per_chunk=0.05))
        model = model_for(fake.base_url)
        pieces: list[str] = []
        call = asyncio.create_task(model.complete("s", "p", on_text=pieces.append))
        await wait_until(lambda: len(pieces) >= 3)
        assert fake.open_streams == 1
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await wait_until(lambda: fake.open_streams == 0, within=5)
        await model.aclose()
    assert fake.streams_cut_by_client == 1
    assert len(pieces) < 500
