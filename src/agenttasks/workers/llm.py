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
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlsplit

from agenttasks.settings import Settings
from agenttasks.workers.retry_policy import retry_after_seconds

if TYPE_CHECKING:
    # Imported where a model is built or fails: the SDK is ~0.5 s and ~25 MB of imports a
    # worker without OPENAI_API_KEY (and the API, which shares the agents' modules) never needs.
    import openai

ErrorKind = Literal[
    "rate_limited", "server_error", "timeout", "network", "auth", "bad_request", "empty"
]

OPENAI_HOST = "api.openai.com"  # where the SDK goes without a base URL

# The variables model_from_env reads; Settings validates them, as for every other setting.
ENV_KEYS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AGENTTASKS_MODEL", "AGENTTASKS_LLM_TIMEOUT")


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int  # cached ones included, as OpenAI counts
    completion_tokens: int
    cached_tokens: int = 0
    # reported; invalid (a count that is not a non-negative integer: all counts recorded as 0);
    # capped (a count over AGENTTASKS_MAX_REPORTED_TOKENS, recorded as the cap)
    status: str = "reported"


def usage_from(raw: Any, cap: int) -> Usage:
    """A server's usage report, checked: what it says when sane, never a negative or absurd count.

    A server can report anything (the SDK does not validate it); a negative count would lower a
    user's spending and a huge one would exhaust a budget, so neither is taken as it is.
    """
    given = [
        getattr(raw, "prompt_tokens", None),
        getattr(raw, "completion_tokens", None),
        getattr(getattr(raw, "prompt_tokens_details", None), "cached_tokens", None) or 0,
    ]
    counts = [c for c in given if isinstance(c, int) and not isinstance(c, bool) and c >= 0]
    if len(counts) < len(given):
        return Usage(0, 0, 0, "invalid")
    prompt, completion, cached = (min(c, cap) for c in counts)
    if cached > prompt:  # cached tokens are part of the prompt's: a report that says otherwise
        return Usage(0, 0, 0, "invalid")
    capped = any(c > cap for c in counts)
    return Usage(prompt, completion, cached, "capped" if capped else "reported")


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
    provider: str  # the host of the API's base URL: where the money goes

    async def complete(
        self, system: str, prompt: str, *, max_tokens: int,
        on_text: Callable[[str], None] | None = None,
    ) -> Completion: ...  # fmt: skip

    async def aclose(self) -> None: ...


class OpenAIModel:
    """Chat completions through the openai SDK, streamed, with usage."""

    engine = "openai"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None,
        model: str,
        timeout: float = 120.0,
        max_reported_tokens: int = 10_000_000,
    ) -> None:
        import openai

        self.model = model
        self.provider = (urlsplit(base_url).hostname or "unknown") if base_url else OPENAI_HOST
        self._max_reported_tokens = max_reported_tokens
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
                    model = served_model(chunk.model, model)
                    if chunk.usage is not None:
                        usage = usage_from(chunk.usage, self._max_reported_tokens)
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


MAX_MODEL_NAME_CHARS = 200  # as a price file's model names


def served_model(name: Any, asked: str) -> str:
    """The model name a server answered with, if it is a plausible name; else `asked`.

    The SDK does not check the stream's `model`: a hostile or broken server could send 10 MB,
    control characters, or a JSON object (which would end up in the Task.ModelCalled event).
    """
    if (
        isinstance(name, str)
        and 0 < len(name) <= MAX_MODEL_NAME_CHARS
        and name.isprintable()
        and name.strip() == name
    ):
        return name
    return asked


def model_from_settings(settings: Settings) -> LanguageModel | None:
    """The configured OpenAI-compatible model, or None (no key): then the offline engine works."""
    if settings.openai_api_key is None:
        return None
    return OpenAIModel(
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url,
        model=settings.model,
        timeout=float(settings.llm_timeout),
        max_reported_tokens=settings.max_reported_tokens,
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
