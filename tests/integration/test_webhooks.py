"""Webhooks end to end: the deliverer role against a loopback receiver that checks signatures.

The receiver verifies every request with the `standardwebhooks` package (not our signing
code), answers 500 to the first two attempts of each webhook-id, and goes away for a while (its
port refuses connections). The deliverer is stopped and started again in between. Every task
ending must be accepted exactly once per endpoint, by webhook-id, with a valid signature.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from standardwebhooks import Webhook

from agenttasks import bootstrap
from agenttasks.application.tasks import Actor, NewTask
from agenttasks.application.webhooks import task_url_secret
from agenttasks.bus.connection import connect
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.settings import Settings
from agenttasks.webhooks import store as tables
from tests.conftest import free_port
from tests.fakes.http import LoopbackServer, Request, Response
from tests.integration.api_client import SECRET, bearer
from tests.integration.live_harness import running_live_api
from tests.integration.stack import Stack, running_stack
from tests.waiting import wait_until

ALICE = Actor("alice")
FAILURES_FIRST = 2  # 500s before the receiver accepts a webhook-id


class Receiver:
    """A webhook receiver on a fixed loopback port that can go away and come back."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self.port = free_port()
        self.secrets = secrets  # path -> the secret that signs what is sent there
        self.accepted: Counter[tuple[str, str]] = Counter()  # (path, webhook-id) -> 200s sent
        self.tries: Counter[tuple[str, str]] = Counter()
        self.bad_signatures = 0
        self.bodies: dict[tuple[str, str], dict[str, Any]] = {}
        self._server: LoopbackServer | None = None

    async def handle(self, request: Request) -> Response:
        key = (request.path, request.headers.get("webhook-id", ""))
        try:
            payload = Webhook(self.secrets[request.path]).verify(request.body, request.headers)
        except Exception:
            self.bad_signatures += 1
            return Response(401)
        self.tries[key] += 1
        if self.tries[key] <= FAILURES_FIRST:
            return Response(500, body=b"not now")
        self.accepted[key] += 1
        self.bodies[key] = payload
        return Response(200, body=b"ok")

    async def start(self) -> None:
        server = LoopbackServer(self.handle)
        # LoopbackServer binds any free port; this receiver comes back on the same one.
        server._server = await asyncio.start_server(server._serve, "127.0.0.1", self.port)
        server.port = self.port
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.__aexit__(None, None, None)
            self._server = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def deliverer_settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        jwt_secret=SECRET,
        fetch_allowed_hosts=frozenset({"127.0.0.1"}),  # the receiver is on loopback
        webhook_timeout=2,
        webhook_retry_seconds=(0.05,) * 6,
    )


class Running:
    """One deliverer process's worth: its own NATS connection, stopped on request."""

    def __init__(self, settings: Settings, stack: Stack, nats: EmbeddedNats) -> None:
        self.settings, self.stack, self.nats = settings, stack, nats
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        async def run() -> None:
            bus = await connect(self.nats.url_for("deliverer"), "test-deliverer")
            try:
                async with bootstrap.deliverer(self.settings, self.stack.store, bus) as deliverer:
                    await deliverer.run(self._stop)
            finally:
                await bus.close()

        self._stop = asyncio.Event()
        self._task = asyncio.create_task(run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


@pytest.fixture
async def stack(database_url: str, nats_server: EmbeddedNats) -> AsyncIterator[Stack]:
    async with running_stack(database_url, nats_server) as stack:
        yield stack


async def register(database_url: str, url: str, events: list[str]) -> tuple[UUID, str]:
    async with AsyncConnectionPool(database_url, min_size=1, max_size=2, open=False) as pool:
        async with pool.connection() as connection:
            await tables.ensure_tables(connection)
        secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        endpoint = await tables.register(
            pool, owner="alice", url=url, events=events, secret=secret, max_per_user=10
        )
        return endpoint.id, secret


def finish(stack: Stack, how: str, *, webhook_url: str | None = None) -> int:
    """A task of alice's ended `how`; returns the position of its last event."""
    new = NewTask("hooked", "summary", {"content": "x"}, webhook_url=webhook_url)
    task_id = stack.commands.create(ALICE, new).task_id
    stack.commands.start(task_id, 1, "w1")
    if how == "completed":
        written = stack.commands.complete(task_id, 1, {"summary": "done"}, "Completed")
    elif how == "failed":
        written = stack.commands.fail(task_id, 1, "network", "connection reset")
    else:
        written = stack.commands.cancel(ALICE, task_id, "enough")
    assert written.position is not None
    return written.position


def attempts_with(database_url: str, text: str) -> int:
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM webhook_attempts WHERE error LIKE %s", (f"%{text}%",)
        ).fetchone()
    return int(row[0]) if row else 0


async def test_every_ending_is_received_once_by_webhook_id_across_failures_and_a_restart(
    stack: Stack, database_url: str, nats_server: EmbeddedNats
) -> None:
    receiver = Receiver({})
    endpoint_id, secret = await register(
        database_url, receiver.url("/hook"), ["task.completed", "task.failed", "task.cancelled"]
    )
    receiver.secrets = {"/hook": secret, "/task": task_url_secret(SECRET, "alice")}
    await receiver.start()
    deliverer = Running(deliverer_settings(database_url), stack, nats_server)
    await deliverer.start()
    expected: dict[str, set[str]] = {"/hook": set(), "/task": set()}
    try:
        for how in ("completed", "failed", "cancelled"):
            position = await asyncio.to_thread(finish, stack, how)
            expected["/hook"].add(f"agenttasks:{position}")
        position = await asyncio.to_thread(
            finish, stack, "completed", webhook_url=receiver.url("/task")
        )
        expected["/hook"].add(f"agenttasks:{position}")
        expected["/task"].add(f"agenttasks:{position}")

        def received() -> set[tuple[str, str]]:
            return set(receiver.accepted)

        def wanted() -> set[tuple[str, str]]:
            return {(path, i) for path, ids in expected.items() for i in ids}

        await wait_until(lambda: received() == wanted(), 30, explain=received)

        # The delivery role stops; tasks end while it is away and while the receiver is away.
        await deliverer.stop()
        await receiver.stop()
        for how in ("completed", "failed"):
            position = await asyncio.to_thread(
                finish, stack, how, webhook_url=receiver.url("/task")
            )
            expected["/hook"].add(f"agenttasks:{position}")
            expected["/task"].add(f"agenttasks:{position}")
        await deliverer.start()
        await wait_until(lambda: attempts_with(database_url, "refused") >= 2, 30)
        await receiver.start()
        await wait_until(lambda: received() == wanted(), 30, explain=received)
    finally:
        await deliverer.stop()
        await receiver.stop()

    assert receiver.bad_signatures == 0
    assert all(count == 1 for count in receiver.accepted.values()), receiver.accepted
    assert all(receiver.tries[key] >= FAILURES_FIRST + 1 for key in receiver.accepted)
    some = receiver.bodies[next(iter(receiver.accepted))]
    assert some["type"] in ("task.completed", "task.failed", "task.cancelled")
    assert some["data"]["user"] == "alice"
    # Every attempt is recorded for the endpoint's owner, retries included.
    with psycopg.connect(database_url) as connection:
        outcomes = dict(
            connection.execute(
                "SELECT outcome, count(*) FROM webhook_attempts WHERE endpoint_id = %s "
                "GROUP BY outcome",
                (endpoint_id,),
            ).fetchall()
        )
    assert outcomes["delivered"] == len(expected["/hook"])
    assert outcomes["retrying"] >= FAILURES_FIRST * len(expected["/hook"])

    # A task's own URL: its attempts are its owner's to read, nobody else's.
    async with running_live_api(database_url, nats_server) as api:
        with psycopg.connect(database_url) as connection:
            row = connection.execute(
                # The first task URL's delivery: two 500s, then accepted (before the outage).
                "SELECT task_id FROM webhook_deliveries WHERE endpoint_id IS NULL "
                "ORDER BY id LIMIT 1"
            ).fetchone()
        assert row is not None
        url = f"/api/v1/utils/webhooks/task-deliveries/?task_id={row[0]}"
        page = (await api.client.get(url, headers=bearer("alice"))).json()
        assert page["count"] == FAILURES_FIRST + 1
        assert page["results"][0]["outcome"] == "delivered"  # newest first
        assert {a["webhook_id"] for a in page["results"]} == {page["results"][0]["webhook_id"]}
        other = (await api.client.get(url, headers=bearer("bob"))).json()
        assert other["count"] == 0


async def test_an_endpoint_that_keeps_failing_is_disabled_and_its_owner_told_why(
    stack: Stack, database_url: str, nats_server: EmbeddedNats
) -> None:
    async def refuse(request: Request) -> Response:
        return Response(503, body=b"down")

    async with LoopbackServer(refuse) as down:
        endpoint_id, _ = await register(database_url, f"{down.base_url}/hook", ["task.completed"])
        settings = deliverer_settings(database_url).with_(webhook_retry_seconds=(0.05, 0.05))
        deliverer = Running(settings, stack, nats_server)
        await deliverer.start()
        try:
            await asyncio.to_thread(finish, stack, "completed")
            await asyncio.to_thread(finish, stack, "failed")  # not subscribed: never sent

            async def status() -> tuple[str, str | None]:
                async with AsyncConnectionPool(database_url, min_size=1, open=False) as pool:
                    found = await tables.endpoint(pool, endpoint_id)
                assert found is not None
                return found.status, found.disabled_reason

            async def disabled() -> bool:
                return (await status())[0] == "disabled"

            await wait_until(disabled, 30)
        finally:
            await deliverer.stop()
    state, reason = await status()
    assert state == "disabled"
    assert reason is not None
    assert "3 failed attempts" in reason
    assert "HTTP 503" in reason
    assert len(down.requests) == 3  # the first attempt and two retries, nothing after
    assert len({r.headers["webhook-id"] for r in down.requests}) == 1  # one delivery, retried


async def test_endpoints_through_the_api_each_user_sees_their_own_and_the_secret_once(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    async def dns(host: str, port: int) -> list[str]:
        return ["93.184.215.14"]  # a public address; nothing is sent in this test

    hooks = "/api/v1/utils/webhooks/"
    alice, bob, root = bearer("alice"), bearer("bob"), bearer("root", admin=True)
    async with running_live_api(database_url, nats_server) as api:
        api.deps.webhooks.resolve = dns
        made = await api.client.post(
            hooks, json={"url": "https://hooks.example.test/a", "events": ["task.failed"]},
            headers=alice,
        )  # fmt: skip
        assert made.status_code == 201, made.text
        endpoint = made.json()
        assert endpoint["secret"].startswith("whsec_")
        assert endpoint["status"] == "enabled"
        assert endpoint["events"] == ["task.failed"]
        one = f"{hooks}{endpoint['id']}/"
        shown = (await api.client.get(one, headers=alice)).json()
        assert shown["secret"] is None  # shown once, in the registration's answer
        assert (await api.client.get(one, headers=bob)).status_code == 404
        assert (await api.client.get(hooks, headers=bob)).json()["count"] == 0
        assert (await api.client.get(hooks, headers=root)).json()["count"] == 1
        page = (await api.client.get(f"{one}deliveries/", headers=alice)).json()
        assert page == {"count": 0, "next": None, "previous": None, "results": []}
        assert (await api.client.get(f"{one}deliveries/", headers=bob)).status_code == 404
        unknown = await api.client.post(
            hooks, json={"url": "https://hooks.example.test/a", "events": ["task.started"]},
            headers=alice,
        )  # fmt: skip
        assert unknown.status_code == 400
        assert "unknown: task.started" in unknown.json()["detail"]
        secret = (await api.client.get(f"{hooks}task-secret/", headers=alice)).json()["secret"]
        assert secret == task_url_secret(SECRET, "alice")
        assert (await api.client.delete(one, headers=bob)).status_code == 404
        assert (await api.client.delete(one, headers=alice)).status_code == 204
        assert (await api.client.get(one, headers=alice)).status_code == 404


async def test_a_slow_endpoint_holds_only_its_own_slots(
    stack: Stack, database_url: str, nats_server: EmbeddedNats
) -> None:
    release = asyncio.Event()
    fast_ids: list[str] = []

    async def slow(request: Request) -> Response:
        await release.wait()  # holds every attempt until the test ends
        return Response(200)

    async def fast(request: Request) -> Response:
        fast_ids.append(request.headers["webhook-id"])
        return Response(200)

    async with LoopbackServer(slow) as stuck, LoopbackServer(fast) as quick:
        await register(database_url, f"{stuck.base_url}/hook", ["task.completed"])
        await register(database_url, f"{quick.base_url}/hook", ["task.completed"])
        settings = deliverer_settings(database_url).with_(
            webhook_timeout=60, webhook_concurrency=4, webhook_concurrency_per_endpoint=2
        )
        deliverer = Running(settings, stack, nats_server)
        await deliverer.start()
        try:
            positions = [await asyncio.to_thread(finish, stack, "completed") for _ in range(6)]
            wanted = {f"agenttasks:{p}" for p in positions}
            await wait_until(lambda: set(fast_ids) == wanted, 30, explain=lambda: fast_ids)
            assert len(stuck.requests) == 2  # its cap: the other four wait their turn
        finally:
            release.set()
            await deliverer.stop()
    assert sorted(fast_ids) == sorted(wanted)  # each once


def deliverer_process(database_url: str, nats_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTTASKS_", "OPENAI_"))}
    env.update(
        AGENTTASKS_DATABASE_URL=database_url, AGENTTASKS_NATS_URL=nats_url,
        AGENTTASKS_JWT_SECRET=SECRET, AGENTTASKS_HOME=str(log.parent),
        AGENTTASKS_FETCH_ALLOWED_HOSTS="127.0.0.1", AGENTTASKS_WEBHOOK_TIMEOUT="1",
        AGENTTASKS_WEBHOOK_RETRY_SECONDS="0.05,0.05",
    )  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "agenttasks.cli", "deliver"],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip


async def test_a_deliverer_killed_mid_attempt_leaves_it_to_the_next_with_the_same_webhook_id(
    stack: Stack, database_url: str, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    seen: list[str] = []
    never = asyncio.Event()

    async def first_hangs(request: Request) -> Response:
        seen.append(request.headers["webhook-id"])
        if len(seen) == 1:
            await never.wait()  # the killed deliverer's attempt gets no answer
        return Response(200)

    async with LoopbackServer(first_hangs) as receiver:
        await register(database_url, f"{receiver.base_url}/hook", ["task.completed"])
        doomed = deliverer_process(
            database_url, nats_server.url_for("deliverer"), tmp_path / "deliver.log"
        )
        try:
            position = await asyncio.to_thread(finish, stack, "completed")
            await wait_until(lambda: len(seen) == 1, 30)  # its attempt is under way
        finally:
            os.kill(doomed.pid, signal.SIGKILL)
            doomed.wait(10)
        survivor = Running(deliverer_settings(database_url), stack, nats_server)
        await survivor.start()
        try:
            # Once the dead one's lease runs out (2 x 1 s timeout + 5 s), it is sent again.
            await wait_until(lambda: len(seen) == 2, 30)
            await wait_until(lambda: delivered(database_url), 10)
        finally:
            never.set()
            await survivor.stop()
    assert seen == [f"agenttasks:{position}"] * 2  # a repeat, which the id lets receivers drop


def delivered(database_url: str) -> bool:
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM webhook_attempts WHERE outcome = 'delivered'"
        ).fetchone()
    return bool(row and row[0] == 1)
