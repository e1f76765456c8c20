"""`agenttasks up` supervises its servers: `kill -9` of NATS, then of the postmaster, under load.

A client creates tasks non-stop with Idempotency-Keys, retrying the same key until the API
confirms it. `up` must start each killed server again on its data; the roles reconnect; every
task is then completed once (read back through the API, and exactly one `Task.Completed` per
task in the event store), and the log says each outage once, not once per attempt.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest

from tests.conftest import free_port
from tests.e2e.test_up import Up, agenttasks_up, token_from_banner
from tests.waiting import block_until

pytestmark = pytest.mark.e2e

TASKS = "/api/v1/utils/ai-tasks/"
BETWEEN_KILLS = 8  # tasks confirmed after each recovery before the next kill


class Load(threading.Thread):
    """Creates tasks one after another; a failure is retried with the same Idempotency-Key."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.http = httpx.Client(
            base_url=url, timeout=10, headers={"Authorization": f"Bearer {token}"}
        )
        self.created: list[str] = []
        self.retries = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            n = 0
            while not self.stop.is_set():
                self.created.append(self._create(f"up-servers-{n}"))
                n += 1
        except BaseException as error:  # reported by the test, not lost in the thread
            self.error = error

    def _create(self, key: str) -> str:
        body = {"title": key, "task_type": "summary", "task_config": {"content": "Hi."}}
        while True:
            try:
                response = self.http.post(TASKS, json=body, headers={"Idempotency-Key": key})
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code in (200, 201):
                task_id: str = response.json()["id"]
                return task_id
            assert response is None or response.status_code >= 500, response.text
            self.retries += 1
            # A client backing off while a server restarts, as a real one would.
            self.stop.wait(0.05)

    def confirmed_more(self, than: int, count: int = BETWEEN_KILLS) -> bool:
        assert self.error is None, self.error
        return len(self.created) >= than + count


def recover(up: Up, load: Load, what: str, kill: psutil.Process) -> float:
    """Kills `kill` (SIGKILL); waits until it is replaced, /ready and creates go on."""
    before = len(load.created)
    began = time.monotonic()
    kill.kill()
    replaced = up.nats_server if what == "NATS" else up.postmaster

    def back() -> bool:
        try:
            return replaced().pid != kill.pid and up.ready()
        except (OSError, ValueError, AssertionError, psutil.Error):
            return False  # not restarted yet (no process, no postmaster.pid)

    block_until(back, 60, every=0.05, explain=lambda: up.output[-3000:])
    recovered = time.monotonic() - began
    block_until(lambda: load.confirmed_more(before), 60, every=0.05, explain=lambda: up.output)
    print(f"\n{what}: kill -9 to /ready again in {recovered:.2f}s")
    return recovered


def completed_through_the_api(load: Load, ids: list[str]) -> bool:
    pending = [i for i in ids if load.http.get(f"{TASKS}{i}/").json()["status"] != "completed"]
    return not pending


def store_counts(home: Path) -> tuple[Counter[str], Counter[str]]:
    """(Task.Created, Task.Completed) per task id, from the event store itself."""
    database_url = json.loads((home / "runtime.json").read_text())["database_url"]
    with psycopg.connect(database_url) as connection:
        found = connection.execute(
            "SELECT originator_id::text, topic FROM agenttasks_events"
            " WHERE topic LIKE '%:Task.Created' OR topic LIKE '%:Task.Completed'"
        ).fetchall()
    created, completed = Counter[str](), Counter[str]()
    for task_id, topic in found:
        (created if topic.endswith("Created") else completed)[task_id] += 1
    return created, completed


# The loggers of the roles' reconnect loops (NATS connections, relay, projector, API watcher).
RECONNECTING = re.compile(
    r"agenttasks\.(bus\.connection|relay|projections\.projector|projections\.positions)\b"
)
WHAT = r"(NATS \([^)]+\)|\w[\w ]*: [\w ]+?)"


def repeated_warnings(log: str) -> dict[str, int]:
    """Reconnect warnings said more than three times (digits and hex blurred: one message)."""
    warnings = [
        re.sub(r"[0-9a-f]{4,}|\d+", "#", line.split("WARNING", 1)[1])
        for line in log.splitlines()
        if "WARNING" in line and RECONNECTING.search(line)
    ]
    return {text: n for text, n in Counter(warnings).items() if n > 3}


def outages(log: str) -> tuple[Counter[str], Counter[str]]:
    """How often each role's connection was said lost, and said restored.

    The API's readiness probe (`agenttasks-ready`) is left out: a probe may give up on a
    connection that never came back, which is no role's outage.
    """
    lost = Counter(w for w in re.findall(WHAT + r" lost \(", log) if "-ready" not in w)
    restored = Counter(w for w in re.findall(WHAT + r" restored after", log) if "-ready" not in w)
    return lost, restored


def test_up_restarts_killed_servers_and_every_task_completes_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with agenttasks_up(home, free_port(), free_port()) as up:
        load = Load(up.url, token_from_banner(up.output))
        load.start()
        try:
            block_until(lambda: load.confirmed_more(0), 60, every=0.05)
            recover(up, load, "NATS", up.nats_server())
            recover(up, load, "PostgreSQL", up.postmaster())
        finally:
            load.stop.set()
            load.join(30)
        assert load.error is None, load.error
        ids = list(load.created)
        assert len(set(ids)) == len(ids), "one key confirmed two tasks"
        block_until(
            lambda: completed_through_the_api(load, ids), 120, every=0.2, explain=lambda: up.output
        )
        created, completed = store_counts(home)
        print(f"{len(ids)} tasks, {load.retries} retried requests")
        assert set(created) == set(ids), "a retried create stored a second task"
        assert all(created[i] == 1 for i in ids), created
        assert {i: completed[i] for i in ids} == dict.fromkeys(ids, 1)
        assert repeated_warnings(up.output) == {}
        lost, restored = outages(up.output)
        assert lost == restored, (lost, restored)  # every outage ended, and was said once
        assert lost["NATS (agenttasks-relay)"] == 1, lost
        assert lost["projector: Postgres"] == 1, lost
        assert max(lost.values()) <= 2, lost  # at most once per kill
        assert up.output.count("NATS restarted") == 1
        assert up.output.count("PostgreSQL restarted") == 1
