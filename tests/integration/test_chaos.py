"""Chaos: `kill -9` of every role, the projector most, under steady load; no read model loses
an event.

The roles run as `agenttasks <role>` children of the same `Supervisor` that `agenttasks up`
uses (restarted when they die). Three clients create tasks non-stop with Idempotency-Keys,
retrying while the API is down; some tasks come from a template, so every read model has rows
to lose. Afterwards every task must be completed in every read model and `agenttasks replay all
--verify` must find no difference.

CI runs a short version; `CHAOS_SECONDS=90 CHAOS_PROJECTOR_KILLS=12` runs a longer one.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg

from agenttasks.api.auth import mint_token
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.supervisor import Child, Supervisor
from tests.conftest import free_port
from tests.waiting import wait_for_value, wait_until

SECRET = "chaos-secret-that-is-long-enough-for-hs256"
BASE = "/api/v1/utils"
LOAD_SECONDS = float(os.environ.get("CHAOS_SECONDS", "25"))
PROJECTOR_KILLS = int(os.environ.get("CHAOS_PROJECTOR_KILLS", "5"))
CLIENTS = 3


def child_env(database_url: str, nats: EmbeddedNats, home: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTTASKS_", "OPENAI_"))}
    env.update(
        AGENTTASKS_HOME=str(home), AGENTTASKS_DATABASE_URL=database_url,
        AGENTTASKS_JWT_SECRET=SECRET, AGENTTASKS_HOST="127.0.0.1", AGENTTASKS_PORT=str(port),
        AGENTTASKS_NATS_URL=nats.url_for("api"),
    )  # fmt: skip
    return env


@contextmanager
def supervised(
    database_url: str, nats: EmbeddedNats, home: Path, port: int
) -> Iterator[dict[str, Child]]:
    """The four roles under a Supervisor that restarts them, as `agenttasks up` runs them."""
    supervisor = Supervisor()
    base = child_env(database_url, nats, home, port)
    roles = {
        "api": (["api"], "api"),
        "relay": (["relay"], "relay"),
        "projector": (["project"], "projector"),
        "worker": (["worker", "--ack-wait", "2", "--concurrency", "16"], "worker"),
    }
    children = {
        name: supervisor.add(name, args, {**base, "AGENTTASKS_NATS_URL": nats.url_for(role)})
        for name, (args, role) in roles.items()
    }
    stopping = threading.Event()

    def supervise() -> None:
        while not stopping.is_set():
            supervisor.check()
            stopping.wait(0.05)

    thread = threading.Thread(target=supervise, daemon=True)
    thread.start()
    try:
        yield children
    finally:
        stopping.set()
        thread.join(5)
        supervisor.stop()


def kill(child: Child) -> None:
    """kill -9, then forget earlier crashes so the supervisor restarts it after its first delay."""
    assert child.process is not None
    child.restarts = 0
    os.kill(child.process.pid, signal.SIGKILL)
    child.process.wait(10)


async def restarted(child: Child, pid: int) -> None:
    await wait_until(
        lambda: child.process is not None and child.process.pid != pid and child.alive, 30
    )


class Load:
    """Clients creating tasks until told to stop; remembers every task the API confirmed."""

    def __init__(self, url: str, template_id: str) -> None:
        self.url = url
        self.template_id = template_id
        self.created: dict[str, str] = {}  # task id -> "direct" or "template"
        self.stop = asyncio.Event()
        self.retries = 0

    async def client(self, number: int) -> None:
        headers = {"Authorization": f"Bearer {mint_token(SECRET, f'user{number}', admin=False)}"}
        async with httpx.AsyncClient(base_url=self.url, timeout=10, headers=headers) as http:
            for n in itertools.count():
                if self.stop.is_set():
                    return
                from_template = n % 4 == 3
                key = f"chaos-{number}-{n}"
                task_id = await self._create(http, key, from_template=from_template)
                self.created[task_id] = "template" if from_template else "direct"

    async def _create(self, http: httpx.AsyncClient, key: str, *, from_template: bool) -> str:
        if from_template:
            path = f"{BASE}/ai-task-templates/{self.template_id}/create_task/"
            body: dict[str, Any] = {"title": key}
        else:
            path = f"{BASE}/ai-tasks/"
            body = {"title": key, "task_type": "summary", "task_config": {"content": "Hi."}}
        while True:  # the same key until the API confirms it: a repeat creates nothing
            try:
                response = await http.post(path, json=body, headers={"Idempotency-Key": key})
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code in (200, 201):
                task_id: str = response.json()["id"]
                return task_id
            assert response is None or response.status_code >= 500, response.text
            self.retries += 1
            # The scenario: a client backing off while the API restarts, as a real one would.
            await asyncio.sleep(0.1)


async def api_up(url: str) -> None:
    async def healthy() -> bool:
        try:
            async with httpx.AsyncClient(timeout=1) as http:
                return (await http.get(f"{url}/ready")).status_code == 200
        except httpx.HTTPError:
            return False

    await wait_until(healthy, 60, every=0.1, explain=lambda: "the API did not become ready")


def rows(database_url: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as connection:
        return connection.execute(query, args).fetchall()


def unfinished(database_url: str, ids: list[str]) -> list[str]:
    """Tasks not completed in some read model (tasks, statistics, template usage)."""
    done = {
        str(i)
        for (i,) in rows(
            database_url,
            "SELECT t.id FROM tasks t JOIN task_statistics s ON s.task_id = t.id"
            " WHERE t.status = 'completed' AND s.status = 'completed' AND t.id = ANY(%s::uuid[])",
            ids,
        )
    }
    return [i for i in ids if i not in done]


async def test_kill_9_of_any_role_under_load_loses_no_event_in_any_read_model(
    database_url: str, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    owner = {"Authorization": f"Bearer {mint_token(SECRET, 'user0', admin=False)}"}
    with supervised(database_url, nats_server, tmp_path, port) as children:
        await api_up(url)
        async with httpx.AsyncClient(base_url=url, timeout=10, headers=owner) as http:
            template = await http.post(
                f"{BASE}/ai-task-templates/",
                json={
                    "name": "Chaos",
                    "task_type": "summary",
                    "default_config": {"content": "Hi."},
                    "shared": True,
                },
            )
            assert template.status_code == 201, template.text
        load = Load(url, template.json()["id"])
        clients = [asyncio.create_task(load.client(n)) for n in range(CLIENTS)]

        # The projector dies most often; every other role dies once in between.
        others = ["relay", "worker", "api"]
        victims = ["projector"] * PROJECTOR_KILLS
        for index, other in enumerate(others):
            victims.insert(1 + index * (len(victims) // len(others) + 1), other)
        pause = LOAD_SECONDS / (len(victims) + 1)
        for victim in victims:
            await asyncio.sleep(pause)  # the scenario: load runs for a while between kills
            child = children[victim]
            assert child.process is not None
            pid = child.process.pid
            kill(child)
            await restarted(child, pid)
        await asyncio.sleep(pause)  # and for a while after the last one
        load.stop.set()
        await asyncio.gather(*clients)

        ids = sorted(load.created)
        assert len(ids) > 20, f"only {len(ids)} tasks were created"
        # Every task the API confirmed completes in every read model (a failure lists the rest).
        await wait_for_value(lambda: unfinished(database_url, ids), lambda m: not m, 90, every=0.2)

        stored = rows(
            database_url,
            "SELECT count(*) FROM tasks WHERE id = ANY(%s::uuid[])",
            ids,
        )
        assert stored == [(len(ids),)]
        from_template = [i for i, how in load.created.items() if how == "template"]
        usage = rows(
            database_url,
            "SELECT count(*) FROM template_usage_tasks WHERE status = 'completed'"
            " AND task_id = ANY(%s::uuid[])",
            from_template,
        )
        assert usage == [(len(from_template),)]
        assert rows(database_url, "SELECT usage_count FROM template_usage") == [
            (len(from_template),)
        ]
        assert rows(database_url, "SELECT name FROM templates") == [("Chaos",)]

        verify = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "agenttasks.cli", "replay", "all", "--verify"],
            env=child_env(database_url, nats_server, tmp_path, port),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
