"""An Idempotency-Key belongs to the request it was first used with.

Before the change, `POST .../ai-task-templates/<id>/create_task/` with a key first used on
`POST /ai-tasks/` answered 200 with that earlier, unrelated task, and a different body under a
used key did the same. Now a key reused with a different request is a 422 problem saying so
(as the IETF draft "The Idempotency-Key HTTP Header Field" does); the same request again still
answers 200 with the first task.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from agenttasks.servers.nats import EmbeddedNats
from tests.integration.api_client import Api, bearer, running_api

BASE = "/api/v1/utils"
KEY = {"Idempotency-Key": "order-42"}
ALICE = bearer("alice")
TASK = {"title": "Summarise", "task_type": "summary", "task_config": {"content": "Some text."}}


@pytest.fixture
async def api(database_url: str, nats_server: EmbeddedNats) -> AsyncIterator[Api]:
    async with running_api(database_url, nats_server) as api:
        yield api


def assert_key_reused(response: httpx.Response) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 422
    assert "Idempotency-Key was first used with a different request" in problem["detail"]


async def post(api: Api, path: str, body: dict[str, Any]) -> httpx.Response:
    return await api.client.post(f"{BASE}{path}", json=body, headers={**ALICE, **KEY})


async def test_a_key_reused_on_another_endpoint_is_a_422_not_the_earlier_task(api: Api) -> None:
    template = await api.client.post(
        f"{BASE}/ai-task-templates/",
        json={"name": "notes", "task_type": "summary", "default_config": {"content": "x"}},
        headers=ALICE,
    )
    assert template.status_code == 201, template.text
    first = await post(api, "/ai-tasks/", TASK)
    assert first.status_code == 201, first.text

    assert_key_reused(
        await post(api, f"/ai-task-templates/{template.json()['id']}/create_task/", {})
    )

    again = await post(api, "/ai-tasks/", TASK)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]


async def test_a_key_reused_with_another_body_is_a_422(api: Api) -> None:
    first = await post(api, "/ai-tasks/", TASK)
    assert first.status_code == 201, first.text
    for changed in (
        {**TASK, "title": "Something else"},
        {**TASK, "priority": "urgent"},
        {**TASK, "task_config": {"content": "Other text."}},
    ):
        assert_key_reused(await post(api, "/ai-tasks/", changed))
    # Spelling out a default is the same request.
    again = await post(api, "/ai-tasks/", {**TASK, "priority": "normal"})
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])


async def test_a_bad_query_parameter_is_named_as_a_query_parameter(api: Api) -> None:
    response = await api.client.get(f"{BASE}/ai-tasks/", params={"page": "abc"}, headers=ALICE)
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert detail.startswith("query parameter `page`"), detail
    assert "ParamType" not in detail
