"""`?min_position=` makes a read wait for a read model: the wait is capped, and says why it ends.

A client chooses the position, so it could hold a request (and a worker thread of the
watcher's attention) for as long as it likes; the cap is AGENTTASKS_READ_WAIT_MS, beyond which
the answer is 503 problem+json with Retry-After, in our own words.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from agenttasks.servers.nats import EmbeddedNats
from agenttasks.settings import Settings, SettingsError
from tests.integration.api_client import bearer
from tests.integration.live_harness import LiveApi, read_sse, running_live_api

BASE = "/api/v1/utils"
ALICE = bearer("alice")
WAIT = 0.2  # seconds: the cap these tests run with


@pytest.fixture
async def api(database_url: str, nats_server: EmbeddedNats) -> AsyncIterator[LiveApi]:
    async with running_live_api(database_url, nats_server) as api:
        api.deps.read_your_writes_timeout = WAIT
        yield api


async def test_a_read_model_that_stays_behind_is_a_503_with_retry_after(api: LiveApi) -> None:
    task_id = await api.new_task()
    await api.stack.stop_projectors()
    position = api.stack.commands.start(task_id, 1, "w1").position
    response = await api.client.get(
        f"{BASE}/ai-tasks/{task_id}/", params={"min_position": position}, headers=ALICE
    )
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["Retry-After"] == "1"
    body = response.json()
    assert body["position"] == position
    assert body["detail"] == (
        f"the read model (tasks) has not reached position {position} yet; try again in 1 s"
    )


async def test_a_position_never_stored_is_a_400_not_a_wait_for_ever(api: LiveApi) -> None:
    newest = api.stack.store.recorder.max_notification_id() or 0
    response = await api.client.get(
        f"{BASE}/ai-tasks/", params={"min_position": newest + 1000}, headers=ALICE
    )
    assert response.status_code == 400
    assert response.json()["detail"] == (
        f"query parameter `min_position`: {newest + 1000} is beyond the newest stored "
        f"position ({newest}); pass a position this service gave you"
    )


@pytest.mark.parametrize("value", ["-1", "1000000000000000000", "abc"])
async def test_min_position_out_of_range_is_a_400_naming_it(api: LiveApi, value: str) -> None:
    response = await api.client.get(
        f"{BASE}/task-statistics/", params={"min_position": value}, headers=ALICE
    )
    assert response.status_code == 400
    assert "min_position" in response.json()["detail"]


async def test_a_stream_sends_its_final_update_even_when_the_read_model_is_stuck(
    api: LiveApi,
) -> None:
    task_id = await api.new_task()
    await api.stack.stop_projectors()
    api.stack.commands.start(task_id, 1, "w1")
    api.stack.commands.complete(task_id, 1, {"summary": "done"})
    received: list[dict[str, Any]] = []
    async with api.client.stream(
        "GET", f"{BASE}/tasks/{task_id}/stream/", headers=ALICE
    ) as response:
        await read_sse(response, received)  # ends: the gate's wait is capped
    assert [m["data"]["type"] for m in received] == ["created", "started", "completed"]


@pytest.mark.parametrize("value", ["-1", "60001", "soon"])
def test_the_read_wait_setting_is_bounded(value: str) -> None:
    with pytest.raises(SettingsError, match="AGENTTASKS_READ_WAIT_MS"):
        Settings.from_env({"AGENTTASKS_READ_WAIT_MS": value})


def test_the_read_wait_setting_is_read() -> None:
    assert Settings.from_env({"AGENTTASKS_READ_WAIT_MS": "250"}).read_wait_ms == 250
    assert Settings().read_wait_ms == 5000
