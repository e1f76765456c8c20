"""The language model: any OpenAI-compatible chat completions API, streamed.

The only module that imports `openai`. The SDK's own retries are off: a failure becomes an
LlmError saying whether it is transient, and the task's retry policy (visible as events)
decides what happens next.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import openai


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    usage: Usage | None  # None when the server does not report it


class LlmError(Exception):
    """A model call that failed; `transient` ones may succeed when retried."""

    def __init__(
        self, kind: str, message: str, *, transient: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.transient = transient
        self.retry_after = retry_after


class LanguageModel(Protocol):
    engine: str
    model: str

    async def complete(
        self, system: str, prompt: str, *, max_tokens: int | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Completion: ...  # fmt: skip

    async def aclose(self) -> None: ...


class OpenAIModel:
    """Chat completions through the openai SDK, streamed, with usage."""

    engine = "openai"

    def __init__(
        self, *, api_key: str, base_url: str | None, model: str, timeout: float = 120.0
    ) -> None:
        self.model = model
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0
        )

    async def complete(
        self, system: str, prompt: str, *, max_tokens: int | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Completion:  # fmt: skip
        """The model's answer; each piece of text goes to `on_text` as it streams."""
        pieces: list[str] = []
        usage: Usage | None = None
        model = self.model
        try:
            stream = await self._client.chat.completions.create(
                model=self.model,
                messages=[
                    {"role": "system", "content": system},
                    {"role": "user", "content": prompt},
                ],
                max_tokens=max_tokens,
                stream=True,
                stream_options={"include_usage": True},
            )
            # `async with` closes the HTTP response however this ends, cancellation included.
            async with stream:
                async for chunk in stream:
                    model = chunk.model or model
                    if chunk.usage is not None:
                        usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                    for choice in chunk.choices:
                        delta = choice.delta.content if choice.delta else None
                        if delta:
                            pieces.append(delta)
                            if on_text is not None:
                                on_text(delta)
        except openai.APIError as error:
            raise _as_llm_error(error) from None
        except (OSError, ValueError) as error:  # the stream broke off, or was not a stream
            raise LlmError("network", f"the model stream broke: {error}", transient=True) from None
        text = "".join(pieces)
        if not text.strip():
            raise LlmError("empty", f"the model {model} returned no text", transient=True)
        return Completion(text=text, model=model, usage=usage)

    async def aclose(self) -> None:
        await self._client.close()


def _as_llm_error(error: openai.APIError) -> LlmError:
    if isinstance(error, openai.APITimeoutError):
        return LlmError("timeout", "the model did not answer in time", transient=True)
    if isinstance(error, openai.APIConnectionError):
        return LlmError("network", f"cannot reach the model: {error}", transient=True)
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        message = f"the model API answered HTTP {status}: {_short(error)}"
        if status == 429:
            return LlmError(
                "rate_limited", message, transient=True, retry_after=_retry_after(error)
            )
        if status >= 500:
            return LlmError(
                "server_error", message, transient=True, retry_after=_retry_after(error)
            )
        if status in (401, 403):
            return LlmError("auth", message, transient=False)
        return LlmError("bad_request", message, transient=False)
    return LlmError("network", f"the model stream broke: {error}", transient=True)


def _retry_after(error: openai.APIStatusError) -> float | None:
    headers = error.response.headers
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _short(error: openai.APIStatusError) -> str:
    return str(error.message)[:300]
