"""How an agent fails: a kind, a message a person can read, and whether a retry may help."""

from __future__ import annotations


class AgentError(Exception):
    """A failure of one attempt. `transient` failures are retried automatically with backoff."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        transient: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.transient = transient
        self.retry_after = retry_after


def as_agent_error(error: Exception) -> AgentError:
    """Any error of an outside system (LLM, web) as an AgentError, keeping its retry advice."""
    if isinstance(error, AgentError):
        return error
    kind = getattr(error, "kind", None)
    if isinstance(kind, str):  # LlmError and FetchError carry kind/transient/retry_after
        return AgentError(
            kind,
            str(error),
            transient=bool(getattr(error, "transient", False)),
            retry_after=getattr(error, "retry_after", None),
        )
    if isinstance(error, OSError | TimeoutError):
        return AgentError("network", f"{type(error).__name__}: {error}", transient=True)
    return AgentError("internal", f"{type(error).__name__}: {error}")
