"""The API on real servers with a handle on its live-update internals, and stream readers."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

import httpx
import uvicorn

from agenttasks.api.deps import ApiDeps
from agenttasks.application.tasks import SYSTEM, TaskCommands
from agenttasks.bootstrap import api_app
from agenttasks.servers.nats import EmbeddedNats
from tests.conftest import free_port
from tests.integration.api_client import bearer, settings_for
from tests.integration.stack import Stack, running_stack
from tests.waiting import wait_until

BASE = "/api/v1/utils"
T = TypeVar("T")


@dataclass
class LiveApi:
    client: httpx.AsyncClient
    stack: Stack
    url: str
    port: int
    deps: ApiDeps
    loop: asyncio.AbstractEventLoop  # the server's own event loop (it runs in a thread)

    @property
    def commands(self) -> TaskCommands:
        return self.stack.commands

    async def in_server(self, function: Callable[[], Awaitable[T]]) -> T:
        """Runs `function()` on the server's event loop and returns its result."""
        future = asyncio.run_coroutine_threadsafe(_call(function), self.loop)
        return await asyncio.wrap_future(future)

    async def server_task_count(self) -> int:
        async def count() -> int:
            return len(asyncio.all_tasks())

        return await self.in_server(count)

    def subscribers(self) -> int:
        return self.deps.live.hub.subscriber_count

    async def new_task(self, user: str = "alice", title: str = "streamed") -> UUID:
        body = {"title": title, "task_type": "summary", "task_config": {"content": "x"}}
        response = await self.client.post(f"{BASE}/ai-tasks/", json=body, headers=bearer(user))
        assert response.status_code == 201, response.text
        return UUID(response.json()["id"])

    def positions_of(self, *task_ids: UUID) -> list[int]:
        """Every stored position of these tasks, in order: what a complete stream holds."""
        positions = [e.position for t in task_ids for e in self.commands.history(SYSTEM, t)]
        return sorted(positions)


async def _call(function: Callable[[], Awaitable[T]]) -> T:
    return await function()


@asynccontextmanager
async def running_live_api(
    database_url: str, nats: EmbeddedNats, keepalive: float = 0.5, linger: float = 0.1
) -> AsyncIterator[LiveApi]:
    """The API on real servers; its hub drops NATS `linger` s after the last stream closes."""
    async with running_stack(database_url, nats) as stack:
        opened: list[tuple[ApiDeps, asyncio.AbstractEventLoop]] = []
        app = api_app(
            settings_for(database_url, nats),
            keepalive_seconds=keepalive,
            # Called on the server's loop once its collaborators are open.
            on_open=lambda deps: opened.append((deps, asyncio.get_running_loop())),
        )
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            await wait_until(lambda: server.started or not thread.is_alive())
            assert server.started, "the API did not start"
            [(deps, loop)] = opened
            await wait_until(lambda: deps.live.hub.ready)
            deps.live.hub.linger = linger
            url = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                yield LiveApi(client, stack, url, port, deps, loop)
        finally:
            server.should_exit = True
            await asyncio.to_thread(thread.join, 15)


async def read_sse(
    response: httpx.Response, into: list[dict[str, Any]], frames: list[str] | None = None
) -> None:
    """Collects each message (id, data) and each comment frame until the stream ends."""
    message: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if line.startswith(":") or line.startswith("event:"):
            if frames is not None:
                frames.append(line)
        elif line.startswith("id: "):
            message["id"] = int(line[4:])
        elif line.startswith("data: "):
            message["data"] = json.loads(line[6:])
        elif line == "" and message:
            into.append(message)
            message = {}
