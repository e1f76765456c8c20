"""The log formatters: one JSON object per record with role, task and trace; readable text."""

from __future__ import annotations

import io
import json
import logging

from agenttasks.observability import context, logs
from agenttasks.observability.traceparent import TraceContext

SPAN = TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")


def record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom\nsecond line")
        except ValueError as error:
            exc_info = (type(error), error, error.__traceback__)
    return logging.LogRecord(
        "agenttasks.test", logging.WARNING, __file__, 1, message, args, exc_info
    )


def test_a_json_line_names_the_role_task_and_trace_and_stays_one_line() -> None:
    context.set_role("worker")
    with context.bound(task="t-1", span=SPAN):
        line = logs.JsonFormatter().format(record("multi\nline %s", "ok", exc=True))
    assert "\n" not in line
    fields = json.loads(line)
    assert fields["role"] == "worker"
    assert fields["task_id"] == "t-1"
    assert fields["trace_id"] == SPAN.trace_id
    assert fields["span_id"] == SPAN.span_id
    assert fields["message"] == "multi\nline ok"
    assert fields["level"] == "WARNING"
    assert fields["logger"] == "agenttasks.test"
    assert "ValueError: boom" in fields["exception"]


def test_outside_a_task_the_line_has_no_task_or_trace() -> None:
    context.set_role("relay")
    fields = json.loads(logs.JsonFormatter().format(record("idle")))
    assert fields["role"] == "relay"
    assert "task_id" not in fields
    assert "trace_id" not in fields


def test_text_lines_carry_the_same_facts_for_a_person() -> None:
    context.set_role("api")
    with context.bound(task="t-2", span=SPAN):
        line = logs.TextFormatter().format(record("hello"))
    assert f"[api task=t-2 trace={SPAN.trace_id}] agenttasks.test: hello" in line


def test_the_default_is_text_on_a_terminal_and_json_otherwise() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert logs.default_format(Terminal()) == "text"
    assert logs.default_format(io.StringIO()) == "json"


def test_bound_values_do_not_outlive_their_block() -> None:
    with context.bound(task="t-3", span=SPAN):
        pass
    assert context.task_id.get() is None
    assert context.trace.get() is None
