"""The hostile-input suite's shared pieces: an API on real servers whose every secret is a known
canary, a capture of every log record the process emits, and a detector for those secrets."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote
from uuid import uuid4

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agenttasks.bootstrap import projections
from agenttasks.servers.nats import EmbeddedNats, start_nats
from agenttasks.servers.postgres import EmbeddedPostgres, create_database
from tests.conftest import free_port
from tests.integration.api_client import SECRET, api_in_thread, settings_for


def _hypothesis_internals() -> list[tuple[object, str]]:
    # What schemathesis.generation.hypothesis.setup() replaces when schemathesis is imported.
    from hypothesis import core as runner
    from hypothesis.internal import entropy
    from hypothesis.internal.conjecture import engine
    from hypothesis.strategies._internal import collections, core

    return [
        (runner, "RepresentationPrinter"),
        (runner, "BUFFER_SIZE"),
        (engine, "BUFFER_SIZE"),
        (collections, "BUFFER_SIZE"),
        (core, "is_first_param_referenced_in_function"),
        (entropy, "register_random"),
    ]


# Taken when this conftest is imported: before any test module imports schemathesis (its pytest
# plugin is off, see pyproject's addopts).
_HYPOTHESIS_AS_SHIPPED = [(m, name, getattr(m, name)) for m, name in _hypothesis_internals()]


def restore_hypothesis() -> None:
    """Undoes schemathesis' patches of hypothesis, so other property tests in the session run
    and report as they would without it (schemathesis re-applies them when it next generates)."""
    for module, name, value in _HYPOTHESIS_AS_SHIPPED:
        setattr(module, name, value)
    from schemathesis.generation import hypothesis as patcher

    patcher.setup._is_patched = False  # type: ignore[attr-defined]


CANARY_OPENAI_KEY = "sk-canary-openai-7d1f3b2a9c8e4f60a5b4"
# Embedded Postgres trusts its socket, so a password in the URL is never checked but travels
# everywhere the URL does (settings, the eventsourcing environment, the pools).
CANARY_DB_PASSWORD = "pg-canary-password-51c2e9d8"


@dataclass(frozen=True)
class Secrets:
    """What must never reach a client or a log line, by name."""

    values: dict[str, str]

    def found_in(self, text: str) -> list[str]:
        """The names of the secrets `text` holds, raw, JSON-escaped or URL-quoted."""
        found = []
        for name, value in self.values.items():
            forms = {value, json.dumps(value)[1:-1], quote(value, safe="")}
            if any(form in text for form in forms):
                found.append(name)
        return found


def is_problem(headers: dict[str, str], body: str, status: int) -> bool:
    """Whether a response is an RFC 9457 problem document for `status`."""
    if not headers.get("content-type", "").startswith("application/problem+json"):
        return False
    try:
        document = json.loads(body)
    except ValueError:
        return False
    return (
        isinstance(document, dict)
        and document.get("status") == status
        and isinstance(document.get("title"), str)
        and isinstance(document.get("detail"), str)
    )


# Loggers that do not propagate to the root (uvicorn's, and Litestar's once it has configured
# logging), and ours, which a handler on the root alone would miss while Litestar replaces the
# root's handlers at start-up.
_LOGGERS = ("", "agenttasks", "uvicorn", "uvicorn.access", "uvicorn.error", "litestar")


class LogCapture(logging.Handler):
    """Keeps every record, from every thread (the API and the stack run in their own)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._seen: set[int] = set()
        self._formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        self._levels: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if id(record) not in self._seen:  # one record can reach two of our handlers' loggers
            self._seen.add(id(record))
            self.records.append(record)

    def attach(self) -> None:
        """(Re)attaches to every logger that matters; Litestar's start-up drops the root's."""
        for name in _LOGGERS:
            logger = logging.getLogger(name)
            self._levels.setdefault(name, logger.level)
            logger.setLevel(logging.DEBUG)
            if self not in logger.handlers:
                logger.addHandler(self)

    def detach(self) -> None:
        """Leaves the loggers as they were found."""
        for name, level in self._levels.items():
            logging.getLogger(name).removeHandler(self)
            logging.getLogger(name).setLevel(level)

    def lines(self) -> list[str]:
        """Each record as a log file would hold it, traceback and stack included."""
        return [self._formatter.format(record) for record in self.records]


@contextmanager
def capturing_logs() -> Iterator[LogCapture]:
    """Every log record at DEBUG and above while the block runs."""
    capture = LogCapture()
    capture.attach()
    try:
        yield capture
    finally:
        capture.detach()


@dataclass
class CanaryApi:
    """A running API (all read models projected) and the secrets it was configured with."""

    url: str
    secrets: Secrets
    logs: LogCapture
    database_url: str
    nats: EmbeddedNats


@contextmanager
def canary_api(
    postgres: EmbeddedPostgres,
    nats_dir: Path,
    nats_passwords: dict[str, str],
    *,
    read_wait_ms: int | None = None,
) -> Iterator[CanaryApi]:
    """Real Postgres, NATS, relay, every projector and the API, with canary secrets; every log
    record from start to stop is captured (`read_wait_ms`: the API's wait for a read model, when
    not the default)."""
    plain = create_database(postgres.url, f"security_{uuid4().hex[:12]}")
    database_url = make_conninfo(plain, password=CANARY_DB_PASSWORD)
    assert conninfo_to_dict(database_url)["password"] == CANARY_DB_PASSWORD
    nats = start_nats(nats_dir, port=free_port(), passwords=nats_passwords)
    settings = settings_for(database_url, nats).with_(openai_api_key=CANARY_OPENAI_KEY)
    if read_wait_ms is not None:
        settings = settings.with_(read_wait_ms=read_wait_ms)
    secrets = Secrets(
        {
            "JWT secret": SECRET,
            "database URL": database_url,
            "database password": CANARY_DB_PASSWORD,
            "OpenAI key": CANARY_OPENAI_KEY,
            **{f"NATS password of {role}": value for role, value in nats_passwords.items()},
        }
    )
    api = CanaryApi("", secrets, LogCapture(), database_url, nats)
    try:
        with pytest.MonkeyPatch.context() as env, capturing_logs() as api.logs:
            # As an operator sets it: any code that dumps the environment would show it.
            env.setenv("OPENAI_API_KEY", CANARY_OPENAI_KEY)
            all_models = tuple(projections().values())
            with api_in_thread(database_url, nats, all_models, settings) as api.url:
                api.logs.attach()
                yield api
    finally:
        nats.stop()
        api.nats.stop()  # a test may have restarted it
