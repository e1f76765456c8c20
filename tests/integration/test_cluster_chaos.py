"""Chaos on the compose topology from wheels: three clustered NATS nodes (stream replicas 3), one
Postgres, and two each of api, worker, relay and project as separate processes configured only
through environment. Under steady load through both APIs, one after another is killed with
SIGKILL: a NATS node (the stream's leader), the leading relay, one API, one worker, one projector.
As in compose, `agenttasks migrate` runs once before the roles. No victim is restarted: the
standbys and the surviving nodes carry on.

Then: every task completed exactly once (one Completed event each in the store), every stored
event on the stream once and in order (read from a surviving node), every read model verifies
against the store, and two SSE followers of a task that is mid-run when their API dies, resuming
through the other API with Last-Event-ID, see each of its updates once. The time to recover from
each kill is written to the terminal as bench-style lines (in the run's summary), even when
pytest captures output or runs the tests in pytest-xdist workers.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest

from agenttasks import bootstrap
from agenttasks.api.auth import mint_token
from agenttasks.application.store import EventStore
from agenttasks.application.tasks import SYSTEM, TaskCommands
from agenttasks.bus.connection import connect
from agenttasks.bus.messages import STREAM, TaskEvent, TemplateEvent, decode
from agenttasks.settings import Settings
from tests.conftest import TERMINAL_LINE, free_port
from tests.integration.cluster_harness import (
    HOST,
    NatsCluster,
    Process,
    child_env,
    role_process,
    start_nats_cluster,
    stop_all,
    wait_healthy,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

SECRET = "cluster-chaos-secret-long-enough-for-hs256"
BASE = "/api/v1/utils"
CLIENTS = 4
AFTER_RECOVERY = 15  # tasks created after each recovery before the next kill
# The followed task is driven by the test itself: no worker takes this type.
FOLLOWED_TYPE = "data_analysis"
WORKER_TYPES = "summary,research,content_generation,custom"
POOL_SIZE = 3


def headers(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(SECRET, user, admin=False)}"}


@dataclass
class Load:
    """Clients creating tasks through both APIs, each switching API when a request fails."""

    apis: list[str]
    template_id: str
    created: dict[str, str] = field(default_factory=dict)  # task id -> "direct" | "template"
    done_at: list[tuple[float, float]] = field(default_factory=list)  # (sent, answered)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    retries: int = 0

    async def client(self, number: int) -> None:
        auth = headers(f"user{number}")
        async with httpx.AsyncClient(timeout=10, headers=auth) as http:
            api = number % len(self.apis)
            for n in itertools.count():
                if self.stop.is_set():
                    return
                from_template = n % 4 == 3
                key = f"cluster-{number}-{n}"
                while True:  # the same key until an API confirms it: a repeat creates nothing
                    sent = time.monotonic()
                    task_id = await self._create(http, self.apis[api], key, from_template)
                    if task_id is not None:
                        break
                    self.retries += 1
                    api = (api + 1) % len(self.apis)  # the other API, as a balancer would
                    await asyncio.sleep(0.05)  # the scenario: a client backing off a little
                self.done_at.append((sent, time.monotonic()))
                self.created[task_id] = "template" if from_template else "direct"

    async def _create(
        self, http: httpx.AsyncClient, url: str, key: str, from_template: bool
    ) -> str | None:
        if from_template:
            path = f"{url}{BASE}/ai-task-templates/{self.template_id}/create_task/"
            body: dict[str, Any] = {"title": key}
        else:
            path = f"{url}{BASE}/ai-tasks/"
            body = {"title": key, "task_type": "summary", "task_config": {"content": "Hi."}}
        try:
            response = await http.post(path, json=body, headers={"Idempotency-Key": key})
        except httpx.HTTPError:
            return None
        if response.status_code in (200, 201):
            task_id: str = response.json()["id"]
            return task_id
        assert response.status_code >= 500, response.text
        return None

    def first_success_after(self, moment: float) -> float | None:
        answered = [done for sent, done in self.done_at if sent >= moment]
        return min(answered) if answered else None

    def successes_after(self, moment: float) -> int:
        return sum(1 for sent, _ in self.done_at if sent >= moment)


class Follower:
    """An SSE client of one task that resumes through the next API with Last-Event-ID."""

    def __init__(self, apis: list[str], task_id: str) -> None:
        self.apis = apis
        self.task_id = task_id
        self.seen: list[int] = []
        self.connections = 0

    async def run(self) -> None:
        api = 0
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=60)) as http:
            while True:
                resume = {"Last-Event-ID": str(self.seen[-1])} if self.seen else {}
                url = f"{self.apis[api]}{BASE}/tasks/{self.task_id}/stream/"
                try:
                    async with http.stream(
                        "GET", url, headers={**headers("follower"), **resume}
                    ) as response:
                        if response.status_code == 200:
                            self.connections += 1
                            if await self._read(response):
                                return
                except httpx.HTTPError:
                    pass
                api = (api + 1) % len(self.apis)
                await asyncio.sleep(0.05)  # the scenario: EventSource's retry pause

    async def _read(self, response: httpx.Response) -> bool:
        """Reads until the stream ends; True when it ended after the task's final update."""
        position: int | None = None
        final = False
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                position = int(line[4:])
            elif line.startswith("data: "):
                final = json.loads(line[6:]).get("status") in ("completed", "failed", "cancelled")
            elif line == "" and position is not None:
                self.seen.append(position)
                position = None
        return final


def rows(database_url: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as connection:
        return connection.execute(query, args).fetchall()


def newest_position(database_url: str, store: EventStore) -> int:
    table = store.recorder.events_table_name  # type: ignore[attr-defined]
    found = rows(database_url, f"SELECT coalesce(max(notification_id), 0) FROM {table}")
    return int(found[0][0])


def projected_everywhere(database_url: str) -> int:
    """The store position every read model has applied (the least of their tracking rows)."""
    found = rows(database_url, "SELECT coalesce(min(position), 0) FROM projection_tracking")
    return int(found[0][0])


async def api_ready(url: str, process: Process) -> None:
    async def ready() -> bool:
        assert process.alive, process.log()[-3000:]
        try:
            async with httpx.AsyncClient(timeout=1) as http:
                return (await http.get(f"{url}/ready")).status_code == 200
        except httpx.HTTPError:
            return False

    await wait_until(ready, 90, every=0.1, explain=lambda: process.log()[-3000:])


def leading_relay(relays: list[Process]) -> Process:
    """The relay that took the lead last, by its log (a leader that loses its lock says so)."""

    def last_lead(relay: Process) -> str:
        leads = [line for line in relay.log().splitlines() if "relay: leading" in line]
        return leads[-1][:23] if leads else ""  # the line's timestamp sorts as text

    alive = [r for r in relays if r.alive and last_lead(r)]
    assert alive, [r.log()[-1000:] for r in relays]
    return max(alive, key=last_lead)


@dataclass
class Recovery:
    victim: str
    create_ms: float
    caught_up_ms: float

    def line(self) -> str:
        return (
            f"cluster-chaos kill={self.victim:<14} first_create_after_ms={self.create_ms:8.0f}"
            f"  read_models_caught_up_ms={self.caught_up_ms:8.0f}"
        )


async def kill_and_recover(
    victim: str, kill: Callable[[], None], load: Load, database_url: str, store: EventStore
) -> Recovery:
    """Kills; waits for a create sent after the kill, then for every read model to hold what
    was stored by the time it was answered."""
    killed_at = time.monotonic()
    await asyncio.to_thread(kill)
    await wait_until(lambda: load.first_success_after(killed_at) is not None, 60, every=0.02)
    first = load.first_success_after(killed_at)
    assert first is not None
    stored = await asyncio.to_thread(newest_position, database_url, store)

    async def caught_up_with_it() -> bool:
        return await asyncio.to_thread(projected_everywhere, database_url) >= stored

    await wait_until(caught_up_with_it, 60, every=0.02)
    caught_up = time.monotonic()
    # The scenario: load runs on for a while before the next kill.
    await wait_until(lambda: load.successes_after(killed_at) >= AFTER_RECOVERY, 60, every=0.02)
    return Recovery(victim, (first - killed_at) * 1000, (caught_up - killed_at) * 1000)


def stream_positions(cluster: NatsCluster, node_index: int) -> list[int]:
    """Every message's store position, in stream order, read from one node alone."""

    async def read() -> list[int]:
        node = cluster.nodes[node_index]
        bus = await connect(node.url_for("projector", cluster.passwords["projector"]), "check")
        try:
            _, last = await bus.stream_bounds()
            reader = await bus.open_reader("check", 1)
            positions: list[int] = []
            sequences: list[int] = []
            while len(positions) < last:
                for delivery in await reader.fetch(1000, wait=2.0):
                    event = decode(delivery.data)
                    assert isinstance(event, TaskEvent | TemplateEvent), event
                    positions.append(event.position)
                    sequences.append(delivery.sequence)
            await reader.close()
            assert sequences == list(range(1, last + 1))
            return positions
        finally:
            await bus.close()

    return asyncio.run(read())


def completed_counts(database_url: str, store: EventStore) -> dict[str, int]:
    table = store.recorder.events_table_name  # type: ignore[attr-defined]
    found = rows(
        database_url,
        f"SELECT originator_id, count(*) FROM {table} WHERE topic LIKE %s GROUP BY originator_id",
        "%:Task.Completed",
    )
    return {str(task_id): int(count) for task_id, count in found}


def unfinished(database_url: str, ids: list[str]) -> list[str]:
    done = {
        str(i)
        for (i,) in rows(
            database_url,
            "SELECT id FROM tasks WHERE status = 'completed' AND id = ANY(%s::uuid[])",
            ids,
        )
    }
    return [i for i in ids if i not in done]


async def test_the_compose_topology_loses_nothing_when_one_of_each_role_and_a_nats_node_dies(
    database_url: str,
    nats_passwords: dict[str, str],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    def record(line: str) -> None:
        # On the record, passing or not: tests/conftest.py prints these lines in the run's
        # summary (a pytest-xdist worker has no terminal of its own to print them on).
        record_property(TERMINAL_LINE, line)

    cluster = start_nats_cluster(tmp_path / "nats", nats_passwords)
    processes: list[Process] = list(cluster.processes)
    settings = Settings(database_url=database_url, database_pool_size=2)
    try:
        await asyncio.to_thread(wait_healthy, cluster)

        def env(role: str, home: str) -> dict[str, str]:
            return {
                "AGENTTASKS_HOME": str(tmp_path / home),
                "AGENTTASKS_DATABASE_URL": database_url,
                "AGENTTASKS_NATS_URL": cluster.url_for(role),
                "AGENTTASKS_JWT_SECRET": SECRET,
                "AGENTTASKS_STREAM_REPLICAS": "3",
                # Eight processes at the default 8 each would exhaust Postgres's 100 connections.
                "AGENTTASKS_DATABASE_POOL_SIZE": str(POOL_SIZE),
            }

        ports = [free_port(), free_port()]
        apis = [
            role_process(
                f"api{i}", ["api", "--host", HOST, "--port", str(port)],
                env("api", f"api{i}"), tmp_path / "logs",
            )
            for i, port in enumerate(ports)
        ]  # fmt: skip
        relays = [
            role_process(f"relay{i}", ["relay"], env("relay", f"relay{i}"), tmp_path / "logs")
            for i in range(2)
        ]
        projectors = [
            role_process(
                f"project{i}", ["project"], env("projector", f"project{i}"), tmp_path / "logs"
            )
            for i in range(2)
        ]
        workers = [
            role_process(
                f"worker{i}",
                ["worker", "--types", WORKER_TYPES, "--ack-wait", "2", "--concurrency", "8"],
                env("worker", f"worker{i}"), tmp_path / "logs",
            )
            for i in range(2)
        ]  # fmt: skip
        # As compose runs it: once, before any role, with the relay's and the workers' users.
        migrate = role_process(
            "migrate", ["migrate"],
            {**env("api", "migrate"), "AGENTTASKS_NATS_RELAY_URL": cluster.url_for("relay"),
             "AGENTTASKS_NATS_WORKER_URL": cluster.url_for("worker")},
            tmp_path / "logs",
        )  # fmt: skip
        processes.append(migrate.start())
        assert await asyncio.to_thread(migrate.wait, 120) == 0, migrate.log()
        for role in [*relays, *projectors, *workers, *apis]:
            processes.append(role.start())
        urls = [f"http://{HOST}:{port}" for port in ports]
        for url, api in zip(urls, apis, strict=True):
            await api_ready(url, api)

        with bootstrap.event_store(settings) as store:
            await run_scenario(cluster, store, database_url, urls, apis, relays, projectors,
                               workers, env("projector", "replay"), record)  # fmt: skip
    except BaseException:
        for process in processes:  # the logs go with the temporary directory: show them now
            print(f"----- {process.name} (pid {process.pid}) -----")
            print("\n".join(process.log().splitlines()[-40:]))
        raise
    finally:
        # Roles first (they would only log reconnects), then the NATS nodes; each by its PID.
        stop_all([p for p in processes if p not in cluster.processes])
        stop_all(cluster.processes)


async def run_scenario(
    cluster: NatsCluster,
    store: EventStore,
    database_url: str,
    urls: list[str],
    apis: list[Process],
    relays: list[Process],
    projectors: list[Process],
    workers: list[Process],
    replay_env: dict[str, str],
    record: Callable[[str], None],
) -> None:
    commands: TaskCommands = bootstrap.task_commands(store)
    owner = headers("user0")
    async with httpx.AsyncClient(timeout=10, headers=owner) as http:
        template = await http.post(
            f"{urls[0]}{BASE}/ai-task-templates/",
            json={"name": "Chaos", "task_type": "summary",
                  "default_config": {"content": "Hi."}, "shared": True},
        )  # fmt: skip
        assert template.status_code == 201, template.text
        followed = await http.post(
            f"{urls[0]}{BASE}/ai-tasks/",
            headers=headers("follower"),
            json={"title": "followed", "task_type": FOLLOWED_TYPE,
                  "task_config": {"data": {"sales": [1, 2, 3]}}},
        )  # fmt: skip
        assert followed.status_code == 201, followed.text
    followed_id = followed.json()["id"]
    task = UUID(followed_id)

    placement: tuple[str | None, int] = (None, 0)

    async def on_three_nodes() -> bool:
        nonlocal placement
        placement = await asyncio.to_thread(cluster.stream_placement, STREAM)
        return placement[0] is not None and placement[1] == 3

    # The stream really is replicated on the three nodes (AGENTTASKS_STREAM_REPLICAS=3).
    await wait_until(on_three_nodes, 30, every=0.1, explain=lambda: placement)
    leader = placement[0]

    load = Load(urls, template.json()["id"])
    clients = [asyncio.create_task(load.client(n)) for n in range(CLIENTS)]
    await wait_until(lambda: len(load.done_at) >= AFTER_RECOVERY, 60)
    connections = rows(
        database_url, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
    )[0][0]
    record(f"cluster-chaos postgres_connections_under_load={connections}")
    followers = [Follower(urls, followed_id) for _ in range(2)]
    following = [asyncio.create_task(f.run()) for f in followers]
    recoveries: list[Recovery] = []
    try:
        await asyncio.to_thread(commands.start, task, 1, "test-worker")
        await asyncio.to_thread(commands.report_progress, task, 1, 10, "begun")
        # Both followers hold the task's stream on the first API, mid-run.
        await wait_until(lambda: all(len(f.seen) >= 3 for f in followers), 30)

        node = next(n for n in cluster.nodes if n.name == leader)
        assert node.process is not None
        recoveries.append(await kill_and_recover(
            node.name, node.process.kill, load, database_url, store))  # fmt: skip

        relay = leading_relay(relays)
        recoveries.append(await kill_and_recover(
            relay.name, relay.kill, load, database_url, store))  # fmt: skip
        assert leading_relay(relays) is not relay  # the standby took over

        def kill_api() -> None:
            apis[0].kill()
            # Updates stored while the followers are away from any API.
            commands.report_progress(task, 1, 40, "while the API was down")
            commands.report_progress(task, 1, 60, "still going")

        recoveries.append(await kill_and_recover("api0", kill_api, load, database_url, store))
        await wait_until(lambda: all(f.connections >= 2 for f in followers), 30)

        recoveries.append(await kill_and_recover(
            "worker0", workers[0].kill, load, database_url, store))  # fmt: skip
        recoveries.append(await kill_and_recover(
            "project0", projectors[0].kill, load, database_url, store))  # fmt: skip

        await asyncio.to_thread(commands.report_progress, task, 1, 90, "nearly")
        await asyncio.to_thread(commands.complete, task, 1, {"answer": 42})
        await asyncio.wait_for(asyncio.gather(*following), 60)
    finally:
        load.stop.set()
        await asyncio.gather(*clients, return_exceptions=True)
        for reading in following:
            reading.cancel()
        for recovery in recoveries:
            record(recovery.line())
    record(f"cluster-chaos tasks={len(load.created)} client_retries={load.retries}")

    # Every task the APIs confirmed completes, and each exactly once in the store.
    ids = sorted(load.created)
    assert len(ids) >= 5 * AFTER_RECOVERY
    # Every role not killed is still running (a role that exits on its own fails here).
    killed = {recovery.victim for recovery in recoveries}
    for role in [*apis, *relays, *projectors, *workers]:
        assert role.alive or role.name in killed, f"{role.name} exited:\n{role.log()[-3000:]}"
    await wait_until(
        lambda: not unfinished(database_url, ids), 90, every=0.2,
        explain=lambda: f"{len(unfinished(database_url, ids))} tasks not completed",
    )  # fmt: skip
    completed = completed_counts(database_url, store)
    assert {i: completed.get(i, 0) for i in [*ids, followed_id]} == dict.fromkeys(
        [*ids, followed_id], 1
    )
    assert set(completed) == {*ids, followed_id}

    # The followers, resumed through the other API, saw each update of their task once.
    history = [e.position for e in await asyncio.to_thread(commands.history, SYSTEM, task)]
    for follower in followers:
        assert follower.seen == history
        assert follower.connections >= 2

    # Every stored event is on the stream once and in order, read from a surviving node.
    newest = await asyncio.to_thread(newest_position, database_url, store)
    await wait_until(
        lambda: asyncio.to_thread(lambda: projected_everywhere(database_url) >= newest), 60
    )  # what the read models applied came through the stream: it holds everything stored
    surviving = next(i for i, n in enumerate(cluster.nodes) if n.process and n.process.alive)
    positions = await asyncio.to_thread(stream_positions, cluster, surviving)
    table = store.recorder.events_table_name  # type: ignore[attr-defined]
    stored = [
        int(p) for (p,) in rows(database_url, f"SELECT notification_id FROM {table} ORDER BY 1")
    ]
    assert positions == stored
    assert stored[-1] == newest

    verify = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "agenttasks.cli", "replay", "all", "--verify"],
        env=child_env(replay_env),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
