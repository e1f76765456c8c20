"""An OpenAI-compatible chat completions server on loopback: streaming, usage, and scripted
failures (429 with Retry-After, 500, slow streams) for tests of the LLM path."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from tests.fakes.http import LoopbackServer, Request, Response

MODEL = "fake-gpt"


@dataclass(frozen=True)
class Reply:
    text: str | None = None  # None: an answer derived from the prompt
    chunk_delay: float = 0.0
    words_per_chunk: int = 1
    usage: bool = True  # False: like servers that never report usage
    error_after: int | None = None  # chunks sent before an error event ends the stream
    garbage: bool = False  # a stream whose events are not JSON
    cached_tokens: int = 0  # of the prompt's tokens, reported as prompt_tokens_details
    usage_report: Any = None  # sent instead of the counted usage, as is (absurd values too)
    model: Any = None  # sent instead of MODEL as the chunks' model, as is (absurd names too)


@dataclass(frozen=True)
class Status:
    code: int
    retry_after: float | str | None = None  # a str is sent as is (an HTTP date)
    retry_after_ms: float | None = None


@dataclass(frozen=True)
class ChatRequest:
    """One POST /v1/chat/completions as the server received it."""

    model: str
    messages: list[dict[str, Any]]
    stream: bool
    max_tokens: int | None
    include_usage: bool


def reply(
    text: str | None = None,
    *,
    chunk_delay: float = 0.0,
    words_per_chunk: int = 1,
    usage: bool = True,
    error_after: int | None = None,
    cached_tokens: int = 0,
    usage_report: Any = None,
    model: Any = None,
) -> Reply:
    return Reply(
        text, chunk_delay, words_per_chunk, usage, error_after,
        cached_tokens=cached_tokens, usage_report=usage_report, model=model,
    )  # fmt: skip


def slow(seconds_per_chunk: float = 0.2, text: str | None = None) -> Reply:
    return Reply(text or " ".join(["slow"] * 500), seconds_per_chunk)


def garbage() -> Reply:
    return Reply("garbage", garbage=True)


def status(
    code: int, retry_after: float | str | None = None, *, retry_after_ms: float | None = None
) -> Status:
    return Status(code, retry_after, retry_after_ms)


class FakeLlm:
    """The server's state: scripted behaviours (first in, first out; default: reply)."""

    def __init__(self) -> None:
        self.server = LoopbackServer(self._handle)
        self._script: deque[Reply | Status] = deque()
        self.completions: list[dict[str, Any]] = []  # the request bodies, as sent
        self.requests: list[ChatRequest] = []

    @property
    def base_url(self) -> str:
        return f"{self.server.base_url}/v1"

    @property
    def open_streams(self) -> int:
        return self.server.open_streams

    @property
    def streams_cut_by_client(self) -> int:
        return self.server.streams_cut_by_client

    def script(self, *behaviours: Reply | Status) -> None:
        self._script.extend(behaviours)

    async def _handle(self, request: Request) -> Response:
        if request.path.endswith("/models"):
            return _json(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        if not request.path.endswith("/chat/completions") or request.method != "POST":
            return _json(404, {"error": {"message": "not found"}})
        if request.headers.get("authorization", "") != "Bearer test-key":
            return _json(
                401, {"error": {"message": "Incorrect API key", "type": "invalid_request_error"}}
            )
        body = request.json()
        self.completions.append(body)
        self.requests.append(_chat_request(body))
        behaviour = self._script.popleft() if self._script else Reply()
        if isinstance(behaviour, Status):
            return _status(behaviour)
        prompt = body["messages"][-1]["content"]
        text = behaviour.text if behaviour.text is not None else _answer(prompt)
        if not body.get("stream"):
            return _json(200, _completion(text, prompt))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return Response(
            200,
            {"Content-Type": "text/event-stream"},
            stream=_sse(text, prompt, behaviour, include_usage and behaviour.usage),
        )


def _chat_request(body: dict[str, Any]) -> ChatRequest:
    return ChatRequest(
        model=body["model"],
        messages=body["messages"],
        stream=bool(body.get("stream")),
        max_tokens=body.get("max_tokens"),
        include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
    )


def _status(behaviour: Status) -> Response:
    headers: dict[str, str] = {}
    if behaviour.retry_after is not None:
        value = behaviour.retry_after
        headers["Retry-After"] = value if isinstance(value, str) else f"{value:g}"
    if behaviour.retry_after_ms is not None:
        headers["retry-after-ms"] = f"{behaviour.retry_after_ms:g}"
    error = {"message": f"scripted {behaviour.code}", "type": "scripted", "code": None}
    return _json(behaviour.code, {"error": error}, headers)


def _answer(prompt: str) -> str:
    words = [w.strip(".,:;") for w in prompt.split() if len(w) > 3][:12]
    return "# Model answer\n\nThe model read: " + " ".join(words) + ". That is all it says."


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


async def _sse(
    text: str, prompt: str, behaviour: Reply, include_usage: bool
) -> AsyncIterator[bytes]:
    if behaviour.garbage:
        yield b"data: this is not json\n\n"
        return
    words = text.split(" ")
    created = int(time.time())
    name = MODEL if behaviour.model is None else behaviour.model
    for number, start in enumerate(range(0, len(words), behaviour.words_per_chunk)):
        if number == behaviour.error_after:
            error = {"error": {"message": "the model crashed mid-answer", "type": "server_error"}}
            yield f"data: {json.dumps(error)}\n\n".encode()
            return
        piece = " ".join(words[start : start + behaviour.words_per_chunk])
        if start:
            piece = " " + piece
        chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created,
                 "model": name, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}  # fmt: skip
        yield f"data: {json.dumps(chunk)}\n\n".encode()
        if behaviour.chunk_delay:
            await asyncio.sleep(behaviour.chunk_delay)  # the scenario: a model slow on purpose
    end = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created, "model": name,
           "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}  # fmt: skip
    yield f"data: {json.dumps(end)}\n\n".encode()
    if include_usage:
        report = behaviour.usage_report
        if report is None:
            report = _usage(prompt, text, behaviour.cached_tokens)
        usage = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created, "model": name,
                 "choices": [], "usage": report}  # fmt: skip
        yield f"data: {json.dumps(usage)}\n\n".encode()
    yield b"data: [DONE]\n\n"


def usage_of(prompt: str, text: str) -> tuple[int, int]:
    """The (prompt, completion) tokens the server reports for a prompt and its answer."""
    return _tokens(prompt), _tokens(text)


def _usage(prompt: str, text: str, cached: int = 0) -> dict[str, Any]:
    prompt_tokens, completion_tokens = usage_of(prompt, text)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": min(cached, prompt_tokens)}}  # fmt: skip


def _completion(text: str, prompt: str) -> dict[str, Any]:
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": _usage(prompt, text)}  # fmt: skip


def _json(code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        code, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode()
    )


@asynccontextmanager
async def serve_llm() -> AsyncIterator[FakeLlm]:
    """A fake OpenAI-compatible API on a free loopback port; the key it accepts is `test-key`."""
    fake = FakeLlm()
    async with fake.server:
        yield fake
