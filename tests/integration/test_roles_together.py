"""`agenttasks run relay,project,deliver,maintain`: the background roles of `up` in one process.

One process runs them under the `Supervisor` `up` uses, against real Postgres and NATS, with
JSON logs; the test process writes tasks straight into the event store. The tests run in order
on one stack: it relays and projects, each line names its role, one /metrics serves them all;
after a `kill -9` the supervisor starts it again and every role resumes where it stood (no event
lost, none applied twice); SIGTERM then stops every role cleanly.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
import pytest

from agenttasks.application.store import EventStore, close, open_event_store
from agenttasks.application.tasks import Actor, NewTask
from agenttasks.bootstrap import task_commands
from agenttasks.observability import context
from agenttasks.observability.traceparent import new_trace
from agenttasks.servers.nats import start_nats
from agenttasks.servers.postgres import EmbeddedPostgres, create_database
from agenttasks.settings import Settings
from agenttasks.supervisor import Child, Supervisor
from agenttasks.up import TOGETHER, nats_env
from tests.conftest import free_port
from tests.waiting import block_until

SOURCE = str(Path(__file__).resolve().parents[2] / "src")
READ_MODELS = {"tasks", "templates", "template_usage", "statistics", "metrics"}
LOG_NAMES = {"relay": "relay", "project": "projector", "deliver": "deliver", "maintain": "maintain"}


@dataclass
class Stack:
    """The shared process under its supervisor, its store, its log and its metrics port."""

    database_url: str
    store: EventStore
    supervisor: Supervisor
    child: Child
    log: Path
    metrics_port: int

    def create(self, title: str) -> int:
        # Within a trace, as the API's commands are: the projector logs what it applied then.
        with context.bound(span=new_trace()):
            written = task_commands(self.store).create(
                Actor("alice"), NewTask(title, "summary", {"content": "x"})
            )
        assert written.position is not None
        return written.position

    def positions(self) -> dict[str, int]:
        with psycopg.connect(self.database_url) as connection:
            try:
                rows = connection.execute("SELECT name, position FROM projection_tracking")
            except psycopg.errors.UndefinedTable:  # the projector has not created it yet
                return {}
            return dict(rows.fetchall())

    def projected(self, position: int) -> bool:
        positions = self.positions()
        return set(positions) >= READ_MODELS and min(positions.values()) >= position

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def explain(self) -> str:
        return f"{self.positions()}\n{self.log.read_text()[-3000:]}"


@pytest.fixture(scope="module")
def stack(
    postgres: EmbeddedPostgres,
    nats_passwords: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("roles_together")
    database_url = create_database(postgres.url, f"together_{secrets.token_hex(4)}")
    nats = start_nats(home / "nats", port=free_port(), passwords=nats_passwords)
    role_urls = {user: nats.url_for(user) for user in nats_passwords}
    metrics_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTTASKS_", "OPENAI_"))}
    env.update(
        AGENTTASKS_HOME=str(home),
        AGENTTASKS_DATABASE_URL=database_url,
        AGENTTASKS_LOG_FORMAT="json",
        AGENTTASKS_JWT_SECRET="roles-together-secret-long-enough-for-hs256",
        AGENTTASKS_DATABASE_POOL_SIZE="2",
        AGENTTASKS_METRICS_PORT=str(metrics_port),
        PYTHONPATH=SOURCE,
        **nats_env(TOGETHER, role_urls, nats.url_for("reader")),
    )
    store = open_event_store(Settings(database_url=database_url).eventsourcing_env())
    supervisor = Supervisor()
    log = home / "together.log"
    args = ["run", ",".join(TOGETHER), "--log-level", "DEBUG"]
    child = supervisor.add("together", args, env, log=log)
    stopping = threading.Event()

    def supervise() -> None:  # as `up` does between its rounds
        while not stopping.is_set():
            supervisor.check()
            stopping.wait(0.05)

    thread = threading.Thread(target=supervise, daemon=True)
    thread.start()
    try:
        yield Stack(database_url, store, supervisor, child, log, metrics_port)
    finally:
        stopping.set()
        thread.join(5)
        supervisor.stop()
        close(store)
        nats.stop()


def test_one_process_relays_and_projects_and_each_role_logs_as_itself(stack: Stack) -> None:
    position = stack.create("first")
    block_until(lambda: stack.projected(position), 30, every=0.05, explain=stack.explain)
    block_until(
        lambda: {line["role"] for line in stack.lines()} >= set(LOG_NAMES.values()),
        20,
        every=0.05,
        explain=stack.explain,
    )
    for line in stack.lines():  # every line names a role of the process, or all of them
        assert line["role"] in {*LOG_NAMES.values(), "relay,projector,deliver,maintain"}, line
    relay = [line for line in stack.lines() if line["message"] == "relay: leading"]
    assert [line["role"] for line in relay] == ["relay"]
    leading = [line for line in stack.lines() if "maintenance: leading" in line["message"]]
    assert [line["role"] for line in leading] == ["maintain"]

    # One /metrics for the process, on the first role's port, naming every role it runs.
    metrics = httpx.get(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=5).text
    for role in TOGETHER:
        assert f'agenttasks_role_info{{role="{role}"}} 1.0' in metrics


def test_a_killed_process_is_restarted_and_every_role_resumes_from_its_stored_position(
    stack: Stack,
) -> None:
    assert stack.child.process is not None
    first = stack.child.process
    before = stack.positions()
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    position = stack.create("written while it was down")
    block_until(lambda: stack.child.process is not first, 20, every=0.05)
    block_until(lambda: stack.projected(position), 30, every=0.05, explain=stack.explain)
    assert min(before.values()) < position
    with psycopg.connect(stack.database_url) as connection:
        titles = sorted(row[0] for row in connection.execute("SELECT title FROM tasks"))
    assert titles == ["first", "written while it was down"]  # nothing lost, nothing twice
    # The new process leads again: the dead one's leader locks went with its sessions.
    block_until(
        lambda: sum(line["message"] == "relay: leading" for line in stack.lines()) == 2,
        20,
        every=0.05,
        explain=stack.explain,
    )


def test_sigterm_stops_every_role_of_the_process_cleanly(stack: Stack) -> None:
    process = stack.child.process
    assert process is not None
    descendants = psutil.Process(process.pid).children(recursive=True)
    stack.supervisor.stop()
    assert process.returncode == 0, stack.explain()  # stopped by itself, not killed
    _, alive = psutil.wait_procs(descendants, timeout=5)
    assert alive == []
    after = stack.lines()[-40:]
    assert not [line for line in after if line["level"] in {"ERROR", "CRITICAL"}], after
    assert any("no longer leading" in line["message"] for line in after), after
