"""An API on real servers (store, relay, projector), driven through Litestar's test client."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

import httpx
import uvicorn

from agenttasks.api.auth import mint_token
from agenttasks.bootstrap import api_app
from agenttasks.projections.base import Projection
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.servers.secrets import ROLES
from agenttasks.settings import Settings
from tests.conftest import free_port
from tests.integration.stack import Stack, running_stack
from tests.waiting import wait_until

SECRET = "test-secret-that-is-long-enough-for-hs256"


def bearer(user: str, *, admin: bool = False) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(SECRET, user, admin=admin)}"}


def settings_for(database_url: str, nats: EmbeddedNats) -> Settings:
    return Settings(
        database_url=database_url,
        nats_url=nats.url,
        jwt_secret=SECRET,
        nats_role_urls={role: nats.url_for(role) for role in ROLES},
    )


@dataclass
class Api:
    client: httpx.AsyncClient
    stack: Stack
    url: str


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[str]:
    """The API served by uvicorn on a free port, in its own thread and event loop."""
    app = api_app(settings, keepalive_seconds=0.5)  # idle streams show keep-alives quickly
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        await wait_until(lambda: server.started or not thread.is_alive())
        assert server.started, "the API did not start"
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 10)


@asynccontextmanager
async def running_api(database_url: str, nats: EmbeddedNats) -> AsyncIterator[Api]:
    async with (
        running_stack(database_url, nats) as stack,
        serving(settings_for(database_url, nats)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield Api(client, stack, url)


@contextmanager
def api_in_thread(
    database_url: str,
    nats: EmbeddedNats,
    projections: tuple[Projection, ...] | None = None,
    settings: Settings | None = None,
) -> Iterator[str]:
    """The stack (with `projections`, default: tasks) and the API (with `settings`, default:
    settings_for) on their own event loop in a thread; yields the API's URL.

    For synchronous tests (hypothesis runs each example outside any event loop of ours).
    """
    ready: queue.Queue[str | BaseException] = queue.Queue()
    stop = threading.Event()

    async def serve() -> None:
        try:
            async with (
                running_stack(database_url, nats, projections=projections),
                serving(settings or settings_for(database_url, nats)) as url,
            ):
                ready.put(url)
                await asyncio.to_thread(stop.wait)
        except BaseException as error:
            ready.put(error)
            raise

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    outcome = ready.get(timeout=60)
    if isinstance(outcome, BaseException):
        raise outcome
    try:
        yield outcome
    finally:
        stop.set()
        thread.join(30)
