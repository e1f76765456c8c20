"""Causal reads: what a client saw on a stream or in a write's answer, its next query reflects.

Issue 14: a task's SSE stream delivered `completed` and ended, and a GET of its updates sent
right after showed 3 of 4. The stream now sends a finishing update only once the task read
model holds it, and every query endpoint takes `?min_position=` and waits (bounded) for the
read models it reads.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import httpx
import pytest
from websockets.asyncio.client import connect

from agenttasks.api.auth import mint_token
from agenttasks.application.tasks import Actor
from agenttasks.application.templates import TaskFromTemplate
from agenttasks.bootstrap import template_commands
from agenttasks.projections.statistics import statistics_projection
from agenttasks.projections.tasks import task_projection
from agenttasks.projections.template_usage import template_usage_projection
from agenttasks.projections.templates import template_projection
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.settings import Settings
from tests.integration.api_client import SECRET, bearer
from tests.integration.live_harness import LiveApi, read_sse, running_live_api
from tests.integration.worker_harness import running_worker
from tests.waiting import wait_until

BASE = "/api/v1/utils"
ALICE = bearer("alice")
RUNS = 100  # follow-then-read runs in a row (issue 14's "done when")


@pytest.fixture
async def api(database_url: str, nats_server: EmbeddedNats) -> AsyncIterator[LiveApi]:
    async with running_live_api(database_url, nats_server) as api:
        # running_live_api projects tasks; the other read models the queries read:
        for projection in (template_projection(), template_usage_projection()):
            await api.stack.start_projector(projection)
        await api.stack.start_projector(statistics_projection())
        yield api


async def follow_to_the_end(client: httpx.AsyncClient, task_id: UUID) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = []
    url = f"{BASE}/tasks/{task_id}/stream/"
    async with client.stream("GET", url, headers=ALICE) as response:
        assert response.status_code == 200
        await asyncio.wait_for(read_sse(response, received), 20)  # it ends with the task
    return received


async def test_a_task_read_right_after_its_stream_ends_shows_the_end_and_every_update(
    api: LiveApi,
) -> None:
    async with running_worker(api.stack, engine="instant"):
        for run in range(RUNS):
            task_id = await api.new_task(title=f"run {run}")
            received = await follow_to_the_end(api.client, task_id)
            assert received[-1]["data"]["status"] == "completed", received
            # At once, without min_position: what the stream said is what the queries say.
            task, updates = await asyncio.gather(
                api.client.get(f"{BASE}/ai-tasks/{task_id}/", headers=ALICE),
                api.client.get(f"{BASE}/ai-tasks/{task_id}/updates/", headers=ALICE),
            )
            assert task.json()["status"] == "completed", f"run {run}: {task.json()}"
            positions = [u["position"] for u in updates.json()["results"]]
            assert positions == [m["id"] for m in received], f"run {run}"


async def waiting(api: LiveApi, read_model: str) -> bool:
    """Whether a read waits for `read_model` in the server (the watcher has a pending waiter)."""

    async def any_waiter() -> bool:
        return any(not w.done() for _, _, w in api.deps.watcher._waiters[read_model])

    return await api.in_server(any_waiter)


async def answered_once_projected(
    api: LiveApi, path: str, position: int, read_models: tuple[str, ...]
) -> httpx.Response:
    """GET `path` with min_position while its projectors are stopped, then start them.

    The read must wait in the server (a waiter appears) and answer only afterwards.
    """
    request = asyncio.create_task(
        api.client.get(f"{BASE}{path}", params={"min_position": position}, headers=ALICE)
    )
    await wait_until(lambda: waiting(api, read_models[0]), explain=lambda: "no read waits")
    assert not request.done()
    for projection in PROJECTIONS:
        await api.stack.start_projector(projection())
    response = await request
    assert response.status_code == 200, response.text
    return response


PROJECTIONS = (
    task_projection,
    template_projection,
    template_usage_projection,
    statistics_projection,
)


async def test_every_query_endpoint_waits_for_min_position(api: LiveApi) -> None:
    commands = api.stack.commands
    templates = template_commands(api.stack.store, commands, Settings())
    created = await api.client.post(
        f"{BASE}/ai-task-templates/",
        json={"name": "weekly", "task_type": "summary", "default_config": {"content": "x"}},
        headers=ALICE,
    )
    template_id = created.json()["id"]
    task_id = await api.new_task()
    await api.stack.projected("statistics")
    await api.stack.projected("template_usage")

    async def stopped_then(write: Any) -> int:
        await api.stack.stop_projectors()
        return int(write().position)

    # Tasks read model: the task, the lists, the updates.
    position = await stopped_then(lambda: commands.start(task_id, 1, "w1"))
    task = await answered_once_projected(api, f"/ai-tasks/{task_id}/", position, ("tasks",))
    assert task.json()["status"] == "running"
    for progress, path in enumerate(("/ai-tasks/", "/ai-tasks/active/", "/ai-tasks/recent/")):
        position = await stopped_then(
            lambda p=progress: commands.report_progress(task_id, 1, 10 + p, "more")
        )
        listed = await answered_once_projected(api, path, position, ("tasks",))
        assert listed.json()["results"][0]["progress"] == 10 + progress, path
    position = await stopped_then(lambda: commands.report_progress(task_id, 1, 90, "nearly"))
    updates = await answered_once_projected(
        api, f"/ai-tasks/{task_id}/updates/", position, ("tasks",)
    )
    assert updates.json()["results"][-1]["position"] == position

    # Templates and their usage: the template, the list, the most used.
    alice = Actor("alice")
    revised = await stopped_then(
        lambda: templates.revise(alice, UUID(template_id), {"name": "monthly"})
    )
    one = await answered_once_projected(
        api, f"/ai-task-templates/{template_id}/", revised, ("templates",)
    )
    assert one.json()["name"] == "monthly"
    used = await stopped_then(
        lambda: templates.create_task(alice, UUID(template_id), TaskFromTemplate(), None)
    )
    popular = await answered_once_projected(
        api, "/ai-task-templates/popular/", used, ("template_usage",)
    )
    assert [t["usage"]["usage_count"] for t in popular.json()] == [1]
    revised = await stopped_then(
        lambda: templates.revise(alice, UUID(template_id), {"name": "yearly"})
    )
    listed = await answered_once_projected(api, "/ai-task-templates/", revised, ("templates",))
    assert [t["name"] for t in listed.json()["results"]] == ["yearly"]

    # Statistics.
    position = await stopped_then(lambda: commands.complete(task_id, 1, {"summary": "done"}))
    stats = await answered_once_projected(api, "/task-statistics/", position, ("statistics",))
    assert stats.json()["by_status"]["completed"] == 1

    # The audit trail reads the store, which holds every position: no wait, even stopped.
    await api.stack.stop_projectors()
    events = await api.client.get(
        f"{BASE}/ai-tasks/{task_id}/events/", params={"min_position": position}, headers=ALICE
    )
    assert events.status_code == 200
    assert events.json()["results"][-1]["position"] == position


async def test_a_write_answer_carries_the_position_to_pass_on(api: LiveApi) -> None:
    body = {"title": "t", "task_type": "summary", "task_config": {"content": "x"}}
    created = await api.client.post(f"{BASE}/ai-tasks/", json=body, headers=ALICE)
    position = int(created.headers["X-Position"])
    task_id = created.json()["id"]
    events = await api.client.get(f"{BASE}/ai-tasks/{task_id}/events/", headers=ALICE)
    assert [e["position"] for e in events.json()["results"]] == [position]
    stats = await api.client.get(
        f"{BASE}/task-statistics/", params={"min_position": position}, headers=ALICE
    )
    assert stats.json()["total"] == 1  # another read model than the write waited for
    cancelled = await api.client.post(f"{BASE}/ai-tasks/{task_id}/cancel/", headers=ALICE)
    assert int(cancelled.headers["X-Position"]) > position


async def test_every_stream_message_carries_its_position(api: LiveApi) -> None:
    task_id = await api.new_task()
    commands = api.stack.commands
    commands.start(task_id, 1, "w1")
    commands.complete(task_id, 1, {"summary": "done"})
    received = await follow_to_the_end(api.client, task_id)
    assert [m["id"] for m in received] == [m["data"]["position"] for m in received]
    assert [m["id"] for m in received] == api.positions_of(task_id)


async def read_at_once(client: httpx.AsyncClient, task_id: str) -> tuple[str, list[int]]:
    task, updates = await asyncio.gather(
        client.get(f"{BASE}/ai-tasks/{task_id}/", headers=ALICE),
        client.get(f"{BASE}/ai-tasks/{task_id}/updates/", headers=ALICE),
    )
    return task.json()["status"], [u["position"] for u in updates.json()["results"]]


async def test_the_all_tasks_stream_and_the_websocket_hold_a_final_update_too(
    api: LiveApi,
) -> None:
    token = mint_token(SECRET, "alice")
    url = f"ws://127.0.0.1:{api.port}/ws/tasks/?token={token}"
    async with (
        running_worker(api.stack, engine="instant"),
        connect(url) as socket,
        api.client.stream("GET", f"{BASE}/tasks/stream/", headers=ALICE) as stream,
    ):
        lines = stream.aiter_lines()
        await wait_until(lambda: api.subscribers() == 2)
        for run in range(RUNS // 5):
            task_id = str(await api.new_task(title=f"run {run}"))
            over_socket: list[int] = []
            while True:  # the socket follows all of alice's tasks: this one is the only one
                message = json.loads(await asyncio.wait_for(socket.recv(), 10))
                over_socket.append(message["position"])
                if message["status"] == "completed":
                    break
            assert await read_at_once(api.client, task_id) == ("completed", over_socket)
            over_sse: list[int] = []
            while True:
                line = await asyncio.wait_for(anext(lines), 10)
                if line.startswith("data: "):
                    message = json.loads(line[6:])
                    over_sse.append(message["position"])
                    if message["status"] == "completed":
                        break
            assert over_sse == over_socket
            assert await read_at_once(api.client, task_id) == ("completed", over_sse)
