"""Real servers for the tests: one embedded PostgreSQL per session, a fresh database and a fresh
NATS server per test (NATS starts in milliseconds, and a stream shared between tests would mix
their positions). Everything started here is stopped here, by its PID."""

from __future__ import annotations

import itertools
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agenttasks.servers.nats import EmbeddedNats, start_nats
from agenttasks.servers.postgres import EmbeddedPostgres, create_database, start_postgres
from agenttasks.servers.secrets import ROLES

_database_numbers = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    # pytest's default base temp directory is shared by every run on the machine, and each run
    # deletes the older ones: two suites running at once (two developers, or a developer and a
    # benchmark) would delete each other's Postgres data. Each run gets its own instead.
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        config.option.basetemp = tempfile.mkdtemp(prefix="agenttasks-pytest-")


def pytest_unconfigure(config: pytest.Config) -> None:
    basetemp = config.option.basetemp
    if basetemp and Path(basetemp).name.startswith("agenttasks-pytest-"):
        shutil.rmtree(basetemp, ignore_errors=True)


# A test's `record_property(TERMINAL_LINE, line)` puts `line` in the run's summary, passing or
# not: the reports carry it from a pytest-xdist worker, whose own output reaches no terminal.
TERMINAL_LINE = "terminal_line"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for reports in list(terminalreporter.stats.values()):
        for report in reports:
            if getattr(report, "when", None) != "call":  # each phase's report carries them all
                continue
            for name, line in report.user_properties:
                if name == TERMINAL_LINE:
                    terminalreporter.write_line(str(line))


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = start_postgres(tmp_path_factory.mktemp("postgres"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def database_url(postgres: EmbeddedPostgres) -> str:
    """A new, empty database for this test alone."""
    return create_database(postgres.url, f"test_{next(_database_numbers)}")


@pytest.fixture(scope="session")
def nats_passwords() -> dict[str, str]:
    return {role: f"{role}-test-password" for role in ROLES}


@pytest.fixture
def start_nats_server(
    tmp_path_factory: pytest.TempPathFactory, nats_passwords: dict[str, str]
) -> Iterator[Callable[..., EmbeddedNats]]:
    """Starts NATS servers (same dir and port again = a restart); stops them all afterwards."""
    started: list[EmbeddedNats] = []

    def start(data_dir: Path | None = None, port: int | None = None) -> EmbeddedNats:
        server = start_nats(
            data_dir or tmp_path_factory.mktemp("nats"),
            port=port or free_port(),
            passwords=nats_passwords,
        )
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def nats_server(start_nats_server: Callable[..., EmbeddedNats]) -> EmbeddedNats:
    """A fresh NATS server with JetStream and the nats.conf users, for this test alone."""
    return start_nats_server()


@pytest.fixture(scope="module")
def module_nats(
    tmp_path_factory: pytest.TempPathFactory, nats_passwords: dict[str, str]
) -> Iterator[EmbeddedNats]:
    """One NATS server for a whole test module (for modules sharing one running stack)."""
    server = start_nats(tmp_path_factory.mktemp("nats"), port=free_port(), passwords=nats_passwords)
    try:
        yield server
    finally:
        server.stop()
