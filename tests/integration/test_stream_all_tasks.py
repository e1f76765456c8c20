"""The SSE stream of all of a user's tasks: isolation, resume without gap or repeat, live start."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import pytest

from agenttasks.servers.nats import EmbeddedNats
from tests.integration.api_client import bearer
from tests.integration.live_harness import BASE, LiveApi, read_sse, running_live_api
from tests.waiting import wait_until

ALICE = bearer("alice")
URL = f"{BASE}/tasks/stream/"


@pytest.fixture
async def live(database_url: str, nats_server: EmbeddedNats) -> AsyncIterator[LiveApi]:
    async with running_live_api(database_url, nats_server) as api:
        yield api


def run_to_completion(live: LiveApi, task_id: UUID, steps: tuple[int, ...] = (30, 60)) -> None:
    commands = live.commands
    commands.start(task_id, 1, "w1")
    for progress in steps:
        commands.report_progress(task_id, 1, progress, f"at {progress}")
    commands.complete(task_id, 1, {"summary": "done"})


async def test_a_users_stream_carries_all_their_tasks_updates_and_nobody_elses(
    live: LiveApi,
) -> None:
    received: list[dict[str, Any]] = []
    frames: list[str] = []
    async with live.client.stream("GET", URL, headers=ALICE) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = asyncio.create_task(read_sse(response, received, frames))
        first, second = await live.new_task("alice"), await live.new_task("alice")
        theirs = await live.new_task("bob")
        for task_id in (first, theirs, second):
            run_to_completion(live, task_id)
        expected = live.positions_of(first, second)
        await wait_until(lambda: len(received) >= len(expected))
        reader.cancel()

    assert [m["id"] for m in received] == expected, "every update once, in order"
    assert {m["data"]["task_id"] for m in received} == {str(first), str(second)}
    assert all(m["id"] == m["data"]["position"] for m in received)
    assert {m["data"]["update_type"] for m in received} >= {"status", "progress", "result"}
    assert not any(f.startswith("event:") for f in frames), "plain messages fire onmessage"


async def test_an_admins_stream_carries_every_users_tasks(live: LiveApi) -> None:
    received: list[dict[str, Any]] = []
    headers = bearer("root", admin=True)
    async with live.client.stream("GET", f"{URL}?after=0", headers=headers) as response:
        reader = asyncio.create_task(read_sse(response, received))
        mine, theirs = await live.new_task("alice"), await live.new_task("bob")
        expected = live.positions_of(mine, theirs)
        await wait_until(lambda: len(received) >= len(expected))
        reader.cancel()
    assert [m["id"] for m in received] == expected


async def test_reconnecting_with_last_event_id_continues_all_tasks_without_gap_or_repeat(
    live: LiveApi,
) -> None:
    first, second = await live.new_task("alice"), await live.new_task("alice")
    commands = live.commands
    for task_id in (first, second):
        commands.start(task_id, 1, "w1")
        commands.report_progress(task_id, 1, 10, "at 10")
    before: list[dict[str, Any]] = []
    async with live.client.stream("GET", f"{URL}?after=0", headers=ALICE) as response:
        reader = asyncio.create_task(read_sse(response, before))
        await wait_until(lambda: len(before) >= 5)  # history, read in part
        reader.cancel()  # the client drops in the middle of both tasks
    for task_id in (first, second):
        commands.report_progress(task_id, 1, 50, "at 50")
    commands.complete(first, 1, {"summary": "done"})

    after: list[dict[str, Any]] = []
    headers = {**ALICE, "Last-Event-ID": str(before[-1]["id"])}
    async with live.client.stream("GET", URL, headers=headers) as response:
        reader = asyncio.create_task(read_sse(response, after))
        await wait_until(lambda: bool(after))
        commands.complete(second, 1, {"summary": "done"})  # live, after the history
        expected = live.positions_of(first, second)
        await wait_until(lambda: len(before) + len(after) >= len(expected))
        reader.cancel()

    together = [m["id"] for m in before + after]
    assert together == expected, "every update exactly once, in order"


async def test_without_a_resume_point_the_stream_starts_live(live: LiveApi) -> None:
    earlier = await live.new_task("alice")
    run_to_completion(live, earlier)
    received: list[dict[str, Any]] = []
    async with live.client.stream("GET", URL, headers=ALICE) as response:
        reader = asyncio.create_task(read_sse(response, received))
        later = await live.new_task("alice")
        expected = live.positions_of(later)
        await wait_until(lambda: len(received) >= len(expected))
        reader.cancel()
    assert [m["id"] for m in received] == expected


async def test_a_bad_resume_point_is_a_400_and_no_token_is_a_401(live: LiveApi) -> None:
    bad = await live.client.get(URL, headers={**ALICE, "Last-Event-ID": "soon"})
    assert bad.status_code == 400
    assert (await live.client.get(f"{URL}?after=-1", headers=ALICE)).status_code == 400
    assert (await live.client.get(URL)).status_code == 401
