"""The language model: any OpenAI-compatible chat completions API, streamed.

The only module that imports `openai`. The SDK's own retries are off: a failure becomes an
LlmError saying whether it is transient, and the task's retry policy (visible as events)
decides what happens next.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from agenttasks.settings import Settings
from agenttasks.workers.retry_policy import retry_after_seconds

if TYPE_CHECKING:
    # Imported where a model is built or fails: the SDK is ~0.5 s and ~25 MB of imports a
    # worker without OPENAI_API_KEY (and the API, which shares the agents' modules) never needs.
    import openai

ErrorKind = Literal[
    "rate_limited", "server_error", "timeout", "network", "auth", "bad_request", "empty"
]

# The variables model_from_env reads; Settings validates them, as for every other setting.
ENV_KEYS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AGENTTASKS_MODEL", "AGENTTASKS_LLM_TIMEOUT")


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Completion:
    text: str
    model: str  # as the server named it (it may resolve an alias)
    usage: Usage | None  # None when the server does not report it
    finish_reason: str | None = None  # "length": cut off at max_tokens


class LlmError(Exception):
    """A model call that failed; `transient` ones may succeed when retried."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        transient: bool,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.transient = transient
        self.retry_after = retry_after  # seconds the server asked us to wait, if it said


class LanguageModel(Protocol):
    """A chat model that streams its answer; OpenAIModel, or a fake of this interface."""

    engine: str
    model: str

    async def complete(
        self, system: str, prompt: str, *, max_tokens: int,
        on_text: Callable[[str], None] | None = None,
    ) -> Completion: ...  # fmt: skip

    async def aclose(self) -> None: ...


class OpenAIModel:
    """Chat completions through the openai SDK, streamed, with usage."""

    engine = "openai"

    def __init__(
        self, *, api_key: str, base_url: str | None, model: str, timeout: float = 120.0
    ) -> None:
        import openai

        self.model = model
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0
        )

    async def complete(
        self, system: str, prompt: str, *, max_tokens: int,
        on_text: Callable[[str], None] | None = None,
    ) -> Completion:  # fmt: skip
        """The model's answer, at most `max_tokens` long; each piece goes to `on_text`."""
        import openai

        pieces: list[str] = []
        usage: Usage | None = None
        finish_reason: str | None = None
        model = self.model
        try:
            stream = await self._client.chat.completions.create(
                model=self.model,
                messages=[
                    {"role": "system", "content": system},
                    {"role": "user", "content": prompt},
                ],
                # Always sent: without it one call's output, and its cost, has no bound.
                max_tokens=max_tokens,
                stream=True,
                stream_options={"include_usage": True},
            )
            # `async with` closes the HTTP response however this ends, cancellation included,
            # so the server stops generating (and billing) for an answer nobody reads.
            async with stream:
                async for chunk in stream:
                    model = chunk.model or model
                    if chunk.usage is not None:
                        usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                    for choice in chunk.choices:
                        finish_reason = choice.finish_reason or finish_reason
                        delta = choice.delta.content if choice.delta else None
                        if delta:
                            pieces.append(delta)
                            if on_text is not None:
                                on_text(delta)
        except openai.OpenAIError as error:
            raise as_llm_error(error) from None
        except json.JSONDecodeError as error:  # an event that is not JSON: not a compatible API
            raise LlmError(
                "server_error", f"the model API sent a malformed stream: {error}", transient=True
            ) from None
        text = "".join(pieces)
        if not text.strip():
            raise LlmError("empty", f"the model {model} returned no text", transient=True)
        return Completion(text=text, model=model, usage=usage, finish_reason=finish_reason)

    async def aclose(self) -> None:
        """Closes the HTTP connections the client keeps."""
        await self._client.close()


def model_from_settings(settings: Settings) -> LanguageModel | None:
    """The configured OpenAI-compatible model, or None (no key): then the offline engine works."""
    if settings.openai_api_key is None:
        return None
    return OpenAIModel(
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url,
        model=settings.model,
        timeout=float(settings.llm_timeout),
    )


def model_from_env(env: Mapping[str, str]) -> LanguageModel | None:
    """The model the OPENAI_* / AGENTTASKS_MODEL / AGENTTASKS_LLM_TIMEOUT variables describe."""
    # Only the model's variables: a bad unrelated setting must not hide the model's own.
    return model_from_settings(Settings.from_env({k: env[k] for k in ENV_KEYS if k in env}))


def as_llm_error(error: openai.OpenAIError) -> LlmError:
    """Any openai exception as an LlmError, with a message a person can read."""
    import openai

    if isinstance(error, openai.APITimeoutError):
        return LlmError("timeout", "the model did not answer in time", transient=True)
    if isinstance(error, openai.APIConnectionError):
        return LlmError("network", f"cannot reach the model API: {error}", transient=True)
    if isinstance(error, openai.APIStatusError):
        return _status_error(error)
    if isinstance(error, openai.APIError):  # an error event inside the stream
        return LlmError("server_error", f"the model API failed mid-answer: {error}", transient=True)
    # Raised before any request (a missing key, an unusable setting): retrying cannot help.
    return LlmError("bad_request", f"the model client failed: {error}", transient=False)


def _status_error(error: openai.APIStatusError) -> LlmError:
    status = error.status_code
    message = f"the model API answered HTTP {status}: {str(error.message)[:300]}"
    if status == 429:
        return LlmError("rate_limited", message, transient=True, retry_after=_retry_after(error))
    if status >= 500:
        return LlmError("server_error", message, transient=True, retry_after=_retry_after(error))
    if status == 408:
        return LlmError("timeout", message, transient=True)
    if status == 409:  # OpenAI's "another request holds a lock": retryable by its own docs
        return LlmError("server_error", message, transient=True)
    if status in (401, 403):
        return LlmError("auth", message, transient=False)
    return LlmError("bad_request", message, transient=False)


def _retry_after(error: openai.APIStatusError) -> float | None:
    """Seconds from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date."""
    headers = error.response.headers
    if (ms := _number(headers.get("retry-after-ms"))) is not None:
        return ms / 1000
    return retry_after_seconds(headers.get("retry-after"))


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) and number >= 0 else None
