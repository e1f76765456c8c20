"""agenttasks.client against the real stack: the API over HTTP, relay, projector, a worker."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import typing
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import msgspec
import pytest
import uvicorn

from agenttasks import bootstrap
from agenttasks.api.auth import mint_token
from agenttasks.api.schemas import EventView
from agenttasks.client import (
    ApiError,
    AsyncClient,
    Client,
    Followed,
    Options,
    Resync,
    StoredEvent,
    StreamError,
    Task,
    TaskEvent,
    Update,
)
from agenttasks.projections.task_queries import TaskView, UpdateView
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.settings import Settings
from tests.conftest import free_port
from tests.integration.api_client import SECRET, Api, running_api, serving, settings_for
from tests.integration.stack import running_stack
from tests.integration.worker_harness import running_worker
from tests.waiting import wait_until

DOCS = Path(__file__).parents[2] / "docs" / "client.md"
ALICE = mint_token(SECRET, "alice")
SUMMARY = {"content": "Event sourcing keeps every change. " * 40, "max_length": 30}


@pytest.fixture
async def api(database_url: str, nats_server: EmbeddedNats) -> AsyncIterator[Api]:
    async with running_api(database_url, nats_server) as api:
        yield api


class CutStreams(httpx.AsyncBaseTransport):
    """The network between client and API: the first `cuts` task streams break in the middle
    of the chunk after their first message, as a dropped connection does."""

    def __init__(self, cuts: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.cuts = cuts
        self.streams = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith("/stream/"):
            self.streams += 1
            if self.streams <= self.cuts:
                response.stream = _Broken(response.stream)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Broken(httpx.AsyncByteStream):
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        messages = 0
        async for chunk in self.inner:
            if messages:
                yield chunk[: len(chunk) // 2]
                raise httpx.ReadError("connection reset (test)")
            messages += chunk.count(b"\r\nid: ") + chunk.startswith(b"id: ")
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


class CutStreamsSync(httpx.BaseTransport):
    """CutStreams for the blocking client."""

    def __init__(self, cuts: int) -> None:
        self.inner = httpx.HTTPTransport()
        self.cuts = cuts
        self.streams = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.url.path.endswith("/stream/"):
            self.streams += 1
            if self.streams <= self.cuts:
                response.stream = _BrokenSync(response.stream)
        return response

    def close(self) -> None:
        self.inner.close()


class _BrokenSync(httpx.SyncByteStream):
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __iter__(self) -> Iterator[bytes]:
        messages = 0
        for chunk in self.inner:
            if messages:
                yield chunk[: len(chunk) // 2]
                raise httpx.ReadError("connection reset (test)")
            messages += chunk.count(b"\r\nid: ") + chunk.startswith(b"id: ")
            yield chunk

    def close(self) -> None:
        self.inner.close()


async def collect(stream: AsyncIterator[Followed], into: list[Followed]) -> None:
    async for item in stream:
        into.append(item)


def positions(items: list[Followed]) -> list[int]:
    return [item.position for item in items]


async def test_create_follow_to_the_end_then_get_shows_the_task_completed(api: Api) -> None:
    async with running_worker(api.stack, engine="offline"), AsyncClient(api.url, ALICE) as client:
        task = await client.create("Summarise", "summary", SUMMARY, priority="high")
        assert (task.status, task.priority) == ("pending", "high")
        followed = [item async for item in client.follow(task.id)]
        # What the client has seen, the query reflects (docs/api.md, "Consistency").
        after = await client.get(task.id, min_position=followed[-1].position)
        stored = await client.events(task.id)

    assert all(isinstance(item, TaskEvent) for item in followed)
    updates = typing.cast(list[TaskEvent], followed)
    assert updates[0].type == "created"
    assert updates[-1].type == "completed"
    assert positions(followed) == [event.position for event in stored]  # every one, once
    assert after.status == "completed"
    assert after.progress == 100
    assert after.result_data is not None
    assert after.result_data == updates[-1].data["result_data"]


async def test_follow_across_dropped_connections_loses_and_repeats_nothing(api: Api) -> None:
    transport = CutStreams(cuts=3)
    async with (
        running_worker(api.stack, engine="offline"),
        AsyncClient(api.url, ALICE, transport=transport) as client,
    ):
        task = await client.create("Summarise", "summary", SUMMARY)
        followed = [item async for item in client.follow(task.id)]
        stored = await client.events(task.id)

    assert transport.streams >= 4, "the stream was cut three times and followed to its end"
    assert positions(followed) == [event.position for event in stored]
    assert typing.cast(TaskEvent, followed[-1]).status == "completed"


async def test_the_blocking_client_follows_across_dropped_connections(api: Api) -> None:
    transport = CutStreamsSync(cuts=2)

    def run() -> tuple[list[Followed], list[StoredEvent], Task]:
        with Client(api.url, ALICE, transport=transport) as client:
            task = client.create("Summarise", "summary", SUMMARY, idempotency_key="sync-1")
            again = client.create("Summarise", "summary", SUMMARY, idempotency_key="sync-1")
            assert again.id == task.id, "an Idempotency-Key creates one task"
            return list(client.follow(task.id)), client.events(task.id), client.get(task.id)

    async with running_worker(api.stack, engine="offline"):
        followed, stored, task = await asyncio.to_thread(run)

    assert transport.streams >= 3
    assert positions(followed) == [event.position for event in stored]
    assert typing.cast(TaskEvent, followed[-1]).type == "completed"
    assert task.title == "Summarise"


async def test_follow_goes_on_through_an_automatic_retry_to_the_final_update(api: Api) -> None:
    commands = api.stack.commands
    async with AsyncClient(api.url, ALICE) as client:
        task = await client.create("Flaky", "summary", {"content": "x"})
        commands.start(task.id, 1, "w1")
        # The failure and its automatic retry are stored together; the server's stream ends
        # on the failure, the client must not.
        commands.fail(task.id, 1, "timeout", "too slow", retry_in=lambda retries: 0)
        async with aclosing(client.follow(task.id)) as stream:
            followed: list[Followed] = []
            async for item in stream:
                followed.append(item)
                if isinstance(item, TaskEvent) and item.type == "retried":
                    commands.start(task.id, 2, "w1")
                    commands.complete(task.id, 2, {"summary": "done"})

    kinds = [typing.cast(TaskEvent, item).type for item in followed]
    assert kinds == ["created", "started", "failed", "retried", "started", "completed"]


async def test_follow_past_the_catch_up_cap_yields_a_resync_and_ends_with_the_task(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    settings = settings_for(database_url, nats_server).with_(max_catch_up_events=2)
    async with (
        running_stack(database_url, nats_server) as stack,
        serving(settings) as url,
        AsyncClient(url, ALICE) as client,
    ):
        task = await client.create("Long", "summary", {"content": "x"})
        commands = stack.commands
        commands.start(task.id, 1, "w1")
        for progress in (10, 20, 30):
            commands.report_progress(task.id, 1, progress, f"at {progress}")
        completed = commands.complete(task.id, 1, {"summary": "done"}).position
        followed = [item async for item in client.follow(task.id)]

    assert len(followed) == 1
    assert isinstance(followed[0], Resync)
    assert followed[0].position == completed


async def test_list_iterates_every_page_each_task_once_with_filters(api: Api) -> None:
    async with AsyncClient(api.url, ALICE) as client:
        made = [
            await client.create(f"task {n}", "summary", {"content": "x"}, priority=priority)
            for n, priority in enumerate(["low", "high"] * 4)
        ]
        everything = [task.id async for task in client.list(page_size=3)]
        high = [task.id async for task in client.list(page_size=2, priority="high")]
        by_title = [task.title async for task in client.list(page_size=3, ordering="title")]
        first = await client.page(page=2, page_size=3)

    assert sorted(everything) == sorted(task.id for task in made)
    assert len(everything) == len(set(everything)) == 8
    assert sorted(high) == sorted(task.id for task in made if task.priority == "high")
    assert by_title == sorted(by_title)
    assert first.count == 8
    assert len(first.results) == 3
    assert first.next
    assert first.previous


async def test_errors_carry_the_problem_details(api: Api) -> None:
    async with AsyncClient(api.url, ALICE) as client:
        with pytest.raises(ApiError) as bad:
            await client.create("Bad", "summary", {"max_length": 5})
        with pytest.raises(ApiError) as missing:
            await client.get(uuid4())
        with pytest.raises(ApiError) as unknown_stream:
            async for _ in client.follow(uuid4()):
                pass
        task = await client.create("Done", "summary", {"content": "x"})
        await client.cancel(task.id, reason="changed my mind")
        with pytest.raises(ApiError) as conflict:
            await client.cancel(task.id)
        retried = await client.retry(task.id)
    async with AsyncClient(api.url, "not-a-token") as stranger:
        with pytest.raises(ApiError) as unauthorized:
            await stranger.get(task.id)

    assert bad.value.status == 400
    assert bad.value.title == "Bad request"
    assert bad.value.errors
    assert all(error in (bad.value.detail or "") for error in bad.value.errors)
    assert (missing.value.status, missing.value.detail) == (404, "no such task")
    assert unknown_stream.value.status == 404
    assert conflict.value.status == 409
    assert "cancel" in (conflict.value.detail or "")
    assert retried.status == "pending"
    assert retried.attempt == 2
    assert unauthorized.value.status == 401


async def test_updates_and_events_read_the_whole_history(api: Api) -> None:
    commands = api.stack.commands
    async with AsyncClient(api.url, ALICE) as client:
        task = await client.create("History", "summary", {"content": "x"})
        commands.start(task.id, 1, "w1")
        commands.report_progress(task.id, 1, 50, "half")
        last = commands.complete(task.id, 1, {"summary": "done"}).position
        updates = await client.updates(task.id, min_position=last)
        later = await client.updates(task.id, after=updates[1].position)
        stored = await client.events(task.id)

    assert [u.type for u in updates] == ["created", "started", "progress", "completed"]
    assert later == updates[2:]
    assert [e.position for e in stored] == [u.position for u in updates]


def test_the_client_structs_match_the_api_views() -> None:
    # The client keeps copies (the views live next to psycopg and eventsourcing): each field
    # it reads must exist in the API's view with the same type.
    for ours, theirs in ((Task, TaskView), (Update, UpdateView), (StoredEvent, EventView)):
        hints, server = typing.get_type_hints(ours), typing.get_type_hints(theirs)
        for name in ours.__struct_fields__:
            assert name in server, f"{theirs.__name__} has no {name}"
            assert hints[name] == server[name], f"{ours.__name__}.{name}"


def test_importing_the_client_loads_none_of_the_server_stack() -> None:
    code = (
        "import sys, agenttasks.client\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}"
        " & {'litestar', 'nats', 'psycopg', 'psycopg_pool', 'eventsourcing', 'uvicorn'}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"


def test_options_refuse_limits_that_cannot_work() -> None:
    with pytest.raises(ValueError, match="timeouts must be positive"):
        Options(stream_timeout=0)
    with pytest.raises(ValueError, match="max_message_bytes"):
        Options(max_message_bytes=10)


async def test_a_stream_message_over_the_size_cap_is_refused(api: Api) -> None:
    commands = api.stack.commands
    small = Options(max_message_bytes=1024)
    async with AsyncClient(api.url, ALICE, options=small) as client:
        task = await client.create("Big", "summary", {"content": "x"})
        commands.start(task.id, 1, "w1")
        commands.complete(task.id, 1, {"summary": "word " * 1000})
        followed: list[Followed] = []
        with pytest.raises(StreamError, match="larger than 1024 bytes"):
            await collect(client.follow(task.id), followed)

    assert [typing.cast(TaskEvent, item).type for item in followed] == ["created", "started"]


async def test_the_documented_example_runs_against_the_stack(api: Api) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    example = next(block for block in blocks if "Client(" in block)
    env = {**os.environ, "AGENTTASKS_URL": api.url, "AGENTTASKS_TOKEN": ALICE}
    async with running_worker(api.stack, engine="offline"):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", example, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0].startswith("created ")
    assert UUID(lines[0].split()[1])
    assert any(" completed:" in line for line in lines), lines
    assert msgspec.json.decode(lines[-1])["status"] == "completed"


@asynccontextmanager
async def api_on(settings: Settings, port: int) -> AsyncIterator[str]:
    """`serving`, on a port of the test's choosing, so a restarted API has the same URL."""
    app = bootstrap.api_app(settings, keepalive_seconds=0.5)
    # As `agenttasks api` does (roles.py, with 5 s): open streams end when the API stops.
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        await wait_until(lambda: server.started or not thread.is_alive())
        assert server.started, "the API did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 10)


async def test_follow_across_an_api_restart_loses_and_repeats_nothing(
    database_url: str, nats_server: EmbeddedNats
) -> None:
    settings, port = settings_for(database_url, nats_server), free_port()
    followed: list[Followed] = []
    async with running_stack(database_url, nats_server) as stack:
        commands = stack.commands
        async with api_on(settings, port) as url:
            client = AsyncClient(url, ALICE)
            task = await client.create("Across a restart", "summary", {"content": "x"})
            commands.start(task.id, 1, "w1")
            following = asyncio.create_task(collect(client.follow(task.id), followed))
            await wait_until(lambda: len(followed) == 2)  # created, started
        # The API is gone: the client retries while the task goes on without it.
        for progress in (30, 60):
            commands.report_progress(task.id, 1, progress, f"at {progress}")
        commands.complete(task.id, 1, {"summary": "done"})
        async with api_on(settings, port):
            await asyncio.wait_for(following, 30)
            stored = await client.events(task.id)
        await client.aclose()

    assert positions(followed) == [event.position for event in stored]
    kinds = [typing.cast(TaskEvent, item).type for item in followed]
    assert kinds == ["created", "started", "progress", "progress", "completed"]
