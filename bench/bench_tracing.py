"""The per-request, per-command and per-event cost of logs and traces, without servers.

    python bench/bench_tracing.py [--rounds 5]

Prints microseconds per operation (best and spread over the rounds) and the host's steal time;
asserts nothing. What each line times:
- request: the API middleware's work for one request (find the header, parse it, new span id,
  bind it for the request) with a valid incoming traceparent, and with none;
- command: Task.create + start with a trace under way against none (trigger_event reading it);
- relay event: the relay's traceparent for one published event (OpenTelemetry off);
- log line: one record through the JSON formatter, and through the text formatter.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import timeit
from collections.abc import Callable

from agenttasks.domain.task import Task, command_trace
from agenttasks.observability import context, logs, tracing
from agenttasks.observability.http import request_trace

VALID = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
HEADERS = [(b"host", b"127.0.0.1"), (b"authorization", b"Bearer x" * 20), (b"traceparent", VALID)]


def per_call_us(function: Callable[[], object], number: int, rounds: int) -> tuple[float, float]:
    times = [t / number * 1e6 for t in timeit.repeat(function, number=number, repeat=rounds)]
    return min(times), statistics.pstdev(times)


def request() -> None:
    with context.bound(span=request_trace(HEADERS)):
        pass


def request_without_header() -> None:
    with context.bound(span=request_trace(HEADERS[:2])):
        pass


def command() -> None:
    task = Task.create(title="t", task_type="summary", task_config={"content": "x"}, created_by="u")
    task.start(1, "w")


def traced_command() -> None:
    token = command_trace.set(VALID.decode())
    try:
        command()
    finally:
        command_trace.reset(token)


def relay_event() -> None:
    tracing.emitted("relay publish", VALID.decode(), {})


RECORD = logging.LogRecord("agenttasks.bench", logging.INFO, __file__, 1, "attempt %d", (1,), None)
JSON, TEXT = logs.JsonFormatter(), logs.TextFormatter()


def steal() -> str:
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
        total = sum(int(v) for v in fields[1:])
        return f"{100 * int(fields[8]) / total:.1f}% of CPU time since boot"
    except (OSError, IndexError, ValueError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    context.set_role("bench")
    cases: list[tuple[str, Callable[[], object], int]] = [
        ("request, valid traceparent", request, 100_000),
        ("request, no traceparent", request_without_header, 100_000),
        ("command (create + start), no trace", command, 10_000),
        ("command (create + start), traced", traced_command, 10_000),
        ("relay event traceparent", relay_event, 200_000),
    ]
    with context.bound(task="3a05f94d-4a25-553b-916a-7cf44a665069", span=request_trace(HEADERS)):
        cases += [
            ("log line, JSON", lambda: JSON.format(RECORD), 50_000),
            ("log line, text", lambda: TEXT.format(RECORD), 50_000),
        ]
        for name, function, number in cases:
            best, spread = per_call_us(function, number, rounds)
            print(f"{name:40s} {best:8.2f} us  (spread {spread:.2f} over {rounds} rounds)")
    print(f"steal: {steal()}")


if __name__ == "__main__":
    main()
