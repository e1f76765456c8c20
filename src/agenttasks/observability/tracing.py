"""Spans around the units of work: a relay publish, a worker attempt, a projector apply.

Without OpenTelemetry a span is only a new span id in the same trace (a few hundred
nanoseconds), bound for the log lines inside it. With it (otel.py, when
OTEL_EXPORTER_OTLP_ENDPOINT is set) the same calls record real spans and export them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from agenttasks.observability import context
from agenttasks.observability.traceparent import TraceContext, continued, parse

# (name, parent, attributes) -> a context manager yielding the new span's context.
Backend = Callable[
    [str, TraceContext | None, Mapping[str, Any]], AbstractContextManager[TraceContext]
]

_backend: Backend | None = None


def use(backend: Backend | None) -> None:
    """Records spans through `backend` from now on (None: only new span ids, nothing exported)."""
    global _backend
    _backend = backend


def enabled() -> bool:
    """Whether spans are recorded and exported (OpenTelemetry is on)."""
    return _backend is not None


@contextmanager
def span(
    name: str,
    parent: str | bytes | None,
    *,
    task: object | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[TraceContext]:
    """A span under the `traceparent` `parent` (a new trace when it is absent or invalid).

    Log lines inside name the span's trace and `task`; commands inside record the span as the
    trace of the events they store.
    """
    backend = _backend
    if backend is None:
        current = continued(parent)
        with context.bound(task=task, span=current):
            yield current
        return
    with (
        backend(name, parse(parent), attributes or {}) as current,
        context.bound(task=task, span=current),
    ):
        yield current


def emitted(name: str, parent: str | None, attributes: Mapping[str, Any]) -> str | None:
    """The traceparent to send on with a message: `parent` itself, or a finished span's."""
    backend = _backend
    if backend is None or parent is None:
        return parent  # nothing recorded: pass the stored context on unchanged (no cost)
    with backend(name, parse(parent), attributes) as current:
        return current.header
