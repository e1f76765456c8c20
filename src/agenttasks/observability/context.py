"""What every log line says about where it comes from: the role, the task, the trace.

The role is one per process, or per asyncio task where one process runs several roles
(`agenttasks run relay,project`: `role_of_task`); the task id and the trace are context
variables, set where a task is handled (a command, the relay's publish, a worker's attempt, a
projector's apply), so they follow asyncio tasks and `asyncio.to_thread` calls and never leak
from one request to another.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from agenttasks.observability.traceparent import TraceContext

_role = "cli"
task_id: ContextVar[str | None] = ContextVar("agenttasks_task_id", default=None)
trace: ContextVar[TraceContext | None] = ContextVar("agenttasks_trace", default=None)
# Set in each role's task of a process that runs several (roles.run_roles); None: the process's.
role_of_task: ContextVar[str | None] = ContextVar("agenttasks_role", default=None)


def set_role(role: str) -> None:
    """Names this process's role (api, relay, projector, worker, deliver, up, ...) for its logs."""
    global _role
    _role = role


def role() -> str:
    """The role of the code running now: its task's, else this process's."""
    return role_of_task.get() or _role


def current_traceparent() -> str | None:
    """The `traceparent` of the span under way, for an event or a message header."""
    context = trace.get()
    return context.header if context is not None else None


@contextmanager
def bound(*, task: object | None = None, span: TraceContext | None = None) -> Iterator[None]:
    """Within the block, log lines name `task` (an id) and `span`'s trace (when given)."""
    task_token = task_id.set(str(task)) if task is not None else None
    trace_token = trace.set(span) if span is not None else None
    try:
        yield
    finally:
        if trace_token is not None:
            trace.reset(trace_token)
        if task_token is not None:
            task_id.reset(task_token)
