"""Two API processes on one Postgres and one NATS: a client on either sees every update."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
from websockets.asyncio.client import connect

from agenttasks.api.auth import mint_token
from agenttasks.application.tasks import SYSTEM
from agenttasks.servers.nats import EmbeddedNats
from tests.conftest import free_port
from tests.integration.api_client import SECRET, bearer
from tests.integration.live_harness import BASE, read_sse
from tests.integration.stack import running_stack
from tests.waiting import wait_until

ALICE = bearer("alice")


@contextmanager
def api_process(
    database_url: str, nats: EmbeddedNats, home: Path, **settings: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`agenttasks api` in its own process with AGENTTASKS_* `settings`; yields its URL and the
    process, and stops it by its PID."""
    port = free_port()
    env = {
        **os.environ,
        "AGENTTASKS_HOME": str(home),
        "AGENTTASKS_DATABASE_URL": database_url,
        "AGENTTASKS_NATS_URL": nats.url_for("api"),
        "AGENTTASKS_JWT_SECRET": SECRET,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"),
        **{f"AGENTTASKS_{name.upper()}": value for name, value in settings.items()},
    }
    home.mkdir(parents=True, exist_ok=True)
    log = (home / "api.log").open("wb")
    command = [sys.executable, "-c", "from agenttasks.cli import main; main()"]
    process = subprocess.Popen(
        [*command, "api", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


@asynccontextmanager
async def ready_client(url: str, home: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def ready() -> bool:
            try:
                return (await client.get("/ready")).status_code == 200
            except httpx.TransportError:  # not listening yet
                return False

        def log() -> str:
            return (home / "api.log").read_text()[-3000:]

        await wait_until(ready, 30, every=0.1, explain=log)
        yield client


async def test_two_api_processes_each_serve_every_update_to_their_clients(
    database_url: str, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    async with running_stack(database_url, nats_server) as stack:
        with (
            api_process(database_url, nats_server, tmp_path / "one") as (one_url, _),
            api_process(database_url, nats_server, tmp_path / "two") as (two_url, _),
        ):
            async with (
                ready_client(one_url, tmp_path / "one") as one,
                ready_client(two_url, tmp_path / "two") as two,
                one.stream("GET", f"{BASE}/tasks/stream/", headers=ALICE) as on_one,
                two.stream("GET", f"{BASE}/tasks/stream/", headers=ALICE) as on_two,
            ):
                socket_url = two_url.replace("http", "ws") + "/ws/tasks/"
                token = {"Authorization": f"Bearer {mint_token(SECRET, 'alice')}"}
                async with connect(socket_url, additional_headers=token) as socket:
                    seen_one: list[dict[str, Any]] = []
                    seen_two: list[dict[str, Any]] = []
                    seen_socket: list[dict[str, Any]] = []
                    readers = [
                        asyncio.create_task(read_sse(on_one, seen_one)),
                        asyncio.create_task(read_sse(on_two, seen_two)),
                    ]
                    body = {"title": "t", "task_type": "summary", "task_config": {"content": "x"}}
                    # One task created through each process, both driven by a "worker".
                    first = (await one.post(f"{BASE}/ai-tasks/", json=body, headers=ALICE)).json()
                    second = (await two.post(f"{BASE}/ai-tasks/", json=body, headers=ALICE)).json()
                    commands = stack.commands
                    expected: list[int] = []
                    for task in (first, second):
                        task_id = UUID(task["id"])
                        commands.start(task_id, 1, "w1")
                        commands.report_progress(task_id, 1, 50, "half")
                        commands.complete(task_id, 1, {"summary": "done"})
                        expected += [e.position for e in commands.history(SYSTEM, task_id)]
                    expected.sort()
                    while len(seen_socket) < len(expected):
                        seen_socket.append(json.loads(await asyncio.wait_for(socket.recv(), 10)))
                    await wait_until(
                        lambda: len(seen_one) >= len(expected) and len(seen_two) >= len(expected)
                    )
                    for reader in readers:
                        reader.cancel()

    assert [m["id"] for m in seen_one] == expected
    assert [m["id"] for m in seen_two] == expected
    assert [m["position"] for m in seen_socket] == expected


async def test_an_api_process_asked_to_stop_ends_its_open_streams_and_exits(
    database_url: str, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    async with running_stack(database_url, nats_server):
        with api_process(database_url, nats_server, tmp_path / "api") as (url, process):
            async with (
                ready_client(url, tmp_path / "api") as client,
                client.stream("GET", f"{BASE}/tasks/stream/", headers=ALICE) as stream,
            ):
                reader = asyncio.create_task(read_sse(stream, []))
                process.terminate()
                await asyncio.wait_for(reader, 30)  # the server ended the stream
                # uvicorn re-raises the SIGTERM it handled once it has shut down.
                assert await asyncio.to_thread(process.wait, 30) in (0, -signal.SIGTERM)
