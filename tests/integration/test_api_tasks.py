"""The task API over HTTP, on real Postgres and NATS with the relay and projector running."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import pytest

from agenttasks.servers.nats import EmbeddedNats
from tests.integration.api_client import Api, bearer, running_api

BASE = "/api/v1/utils"
ALICE, BOB, ADMIN = bearer("alice"), bearer("bob"), bearer("root", admin=True)
TASK_FIELDS = {
    "id", "title", "task_type", "task_config", "priority", "status", "progress", "result_data",
    "error_message", "error_kind", "created_by", "template_id", "attempt", "max_retries",
    "timeout_seconds",
    "created_at", "started_at", "completed_at", "updated_at", "webhook_url",
    "cost_usd", "tokens", "model_calls", "unpriced_calls",
}  # fmt: skip


@pytest.fixture
async def api(database_url: str, nats_server: EmbeddedNats) -> AsyncIterator[Api]:
    async with running_api(database_url, nats_server) as api:
        yield api


def summary(title: str = "Summarise", **extra: Any) -> dict[str, Any]:
    return {
        "title": title,
        "task_type": "summary",
        "task_config": {"content": "Some text."},
        **extra,
    }


async def create(api: Api, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await api.client.post(f"{BASE}/ai-tasks/", json=summary(**body), headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_a_created_task_is_returned_whole_and_readable_at_once(api: Api) -> None:
    task = await create(api, ALICE, priority="urgent")
    assert set(task) == TASK_FIELDS
    assert (task["status"], task["priority"], task["created_by"]) == ("pending", "urgent", "alice")
    assert task["task_config"] == {"content": "Some text.", "urls": [], "max_length": 200}
    # No model call yet: nothing spent (a known zero), and the answer built from the events
    # says exactly what the read model says below.
    assert (task["cost_usd"], task["model_calls"], task["unpriced_calls"]) == ("0", 0, 0)
    assert task["tokens"] == {"prompt": 0, "completion": 0, "cached": 0}
    assert task["created_at"].endswith("Z") or task["created_at"].endswith("+00:00")

    read = await api.client.get(f"{BASE}/ai-tasks/{task['id']}/", headers=ALICE)
    assert read.status_code == 200
    assert read.json() == task


async def test_the_same_idempotency_key_returns_the_same_task_and_creates_no_other(
    api: Api,
) -> None:
    headers = {**ALICE, "Idempotency-Key": "order-42"}
    first = await api.client.post(f"{BASE}/ai-tasks/", json=summary(), headers=headers)
    again = await api.client.post(f"{BASE}/ai-tasks/", json=summary(), headers=headers)
    bob = await api.client.post(
        f"{BASE}/ai-tasks/", json=summary(), headers={**BOB, "Idempotency-Key": "order-42"}
    )
    assert (first.status_code, again.status_code, bob.status_code) == (201, 200, 201)
    assert again.json()["id"] == first.json()["id"] != bob.json()["id"]
    listed = await api.client.get(f"{BASE}/ai-tasks/", headers=ALICE)
    assert listed.json()["count"] == 1


async def test_listing_filters_searches_orders_and_pages(api: Api) -> None:
    for title, priority in [("alpha 100%", "low"), ("beta_1", "high"), ("gamma", "urgent")]:
        await create(api, ALICE, title=title, priority=priority)
    await create(api, BOB, title="bob's")

    async def titles(query: str) -> list[str]:
        response = await api.client.get(f"{BASE}/ai-tasks/?{query}", headers=ALICE)
        assert response.status_code == 200, response.text
        return [t["title"] for t in response.json()["results"]]

    assert await titles("ordering=-priority") == ["gamma", "beta_1", "alpha 100%"]
    assert await titles("ordering=title") == ["alpha 100%", "beta_1", "gamma"]
    assert await titles("priority=high") == ["beta_1"]
    assert await titles("search=100%25") == ["alpha 100%"]
    assert await titles("search=a_1") == ["beta_1"]
    assert await titles("search=_") == ["beta_1"]
    assert await titles("status=running") == []

    page = (
        await api.client.get(f"{BASE}/ai-tasks/?ordering=title&page_size=2", headers=ALICE)
    ).json()
    assert page["count"] == 3
    assert page["previous"] is None
    assert "page=2" in page["next"]
    second = (await api.client.get(page["next"], headers=ALICE)).json()
    assert [t["title"] for t in second["results"]] == ["gamma"]
    assert second["next"] is None
    assert "page=1" in second["previous"]

    everyone = (await api.client.get(f"{BASE}/ai-tasks/", headers=ADMIN)).json()
    assert everyone["count"] == 4


async def test_another_users_task_is_not_found_and_an_admin_sees_it(api: Api) -> None:
    task = await create(api, ALICE)
    for method, path in [
        ("get", ""), ("get", "updates/"), ("get", "events/"), ("post", "cancel/"), ("post", "retry/"),
    ]:  # fmt: skip
        response = await getattr(api.client, method)(
            f"{BASE}/ai-tasks/{task['id']}/{path}", headers=BOB
        )
        assert response.status_code == 404, (method, path)
        assert response.headers["content-type"].startswith("application/problem+json")
    unknown = await api.client.get(f"{BASE}/ai-tasks/{uuid4()}/", headers=ALICE)
    assert unknown.status_code == 404
    assert (
        unknown.json()["detail"]
        == (await api.client.get(f"{BASE}/ai-tasks/{task['id']}/", headers=BOB)).json()["detail"]
    ), "unknown and forbidden look the same"
    assert (
        await api.client.get(f"{BASE}/ai-tasks/{task['id']}/", headers=ADMIN)
    ).status_code == 200


async def test_cancel_then_retry_and_409_with_the_reason_when_the_state_forbids(api: Api) -> None:
    task = await create(api, ALICE)
    url = f"{BASE}/ai-tasks/{task['id']}"

    retry_pending = await api.client.post(f"{url}/retry/", headers=ALICE)
    assert retry_pending.status_code == 409
    assert "only a failed or cancelled task can be retried" in retry_pending.json()["detail"]

    cancelled = await api.client.post(f"{url}/cancel/", headers=ALICE)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert (await api.client.get(f"{url}/", headers=ALICE)).json()["status"] == "cancelled"

    again = await api.client.post(f"{url}/cancel/", headers=ALICE)
    assert again.status_code == 409
    assert again.json()["detail"] == "cannot cancel a cancelled task"

    retried = await api.client.post(f"{url}/retry/", headers=ALICE)
    assert (retried.json()["status"], retried.json()["attempt"]) == ("pending", 2)
    assert (await api.client.get(f"{url}/", headers=ALICE)).json()["attempt"] == 2


async def test_updates_and_events_tell_the_history_oldest_first(api: Api) -> None:
    task = await create(api, ALICE)
    commands = api.stack.commands
    from uuid import UUID

    commands.start(UUID(task["id"]), 1, "w1")
    commands.report_progress(UUID(task["id"]), 1, 50, "Half way")
    commands.complete(UUID(task["id"]), 1, {"summary": "Done."})
    await api.stack.projected()

    answer = (await api.client.get(f"{BASE}/ai-tasks/{task['id']}/updates/", headers=ALICE)).json()
    assert (answer["count"], answer["next"], answer["previous"]) == (4, None, None)
    updates = answer["results"]
    assert [(u["type"], u["update_type"], u["status"], u["progress"]) for u in updates] == [
        ("created", "status", "pending", 0),
        ("started", "status", "running", 0),
        ("progress", "progress", "running", 50),
        ("completed", "result", "completed", 100),
    ]
    assert updates[2]["message"] == "Half way"
    stored = (await api.client.get(f"{BASE}/ai-tasks/{task['id']}/events/", headers=ALICE)).json()
    assert (stored["count"], stored["next"]) == (4, None)
    events = stored["results"]
    assert [e["position"] for e in events] == [u["position"] for u in updates]
    assert [e["version"] for e in events] == [1, 2, 3, 4]
    assert events[3]["data"]["result_data"] == {"summary": "Done."}
    active = (await api.client.get(f"{BASE}/ai-tasks/active/", headers=ALICE)).json()
    assert active["count"] == 0
    recent = (await api.client.get(f"{BASE}/ai-tasks/recent/", headers=ALICE)).json()
    assert recent["results"][0]["status"] == "completed"


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"title": "x", "task_type": "summary", "task_config": {}}, 400, "needs `content` or `urls`"),
        ({"title": "x", "task_type": "poem", "task_config": {}}, 400, "task_type"),
        ({"title": "", "task_type": "summary", "task_config": {"content": "x"}}, 400, "title"),
        ({"title": "x" * 201, "task_type": "summary", "task_config": {"content": "x"}}, 400, "title"),
        ({"title": "x", "task_type": "summary", "task_config": {"content": "x"}, "colour": 1}, 400, "colour"),
        ({"title": "x", "task_type": "summary", "task_config": {"content": "x"}, "priority": "asap"}, 400, "priority"),
        ({"title": "x", "task_type": "summary", "task_config": "text"}, 400, "task_config"),
    ],
)  # fmt: skip
async def test_bad_bodies_get_a_problem_saying_what_is_wrong(
    api: Api, body: dict[str, Any], status: int, fragment: str
) -> None:
    response = await api.client.post(f"{BASE}/ai-tasks/", json=body, headers=ALICE)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert fragment in response.json()["detail"]


async def test_bad_query_parameters_are_refused_with_the_allowed_values(api: Api) -> None:
    ordering = await api.client.get(f"{BASE}/ai-tasks/?ordering=secret", headers=ALICE)
    assert ordering.status_code == 400
    assert "-created_at" in ordering.json()["detail"]
    size = await api.client.get(f"{BASE}/ai-tasks/?page_size=101", headers=ALICE)
    assert size.status_code == 400
    status = await api.client.get(f"{BASE}/ai-tasks/?status=sleeping", headers=ALICE)
    assert status.status_code == 400


async def test_validate_task_config_reports_every_reason(api: Api) -> None:
    url = f"{BASE}/validate-task-config/"
    good = await api.client.post(
        url, json={"task_type": "research", "task_config": {"topic": "tides"}}, headers=ALICE
    )
    assert good.json() == {"valid": True, "errors": []}
    bad = await api.client.post(
        url, json={"task_type": "custom", "task_config": {"steps": []}}, headers=ALICE
    )
    assert bad.status_code == 200
    assert bad.json()["valid"] is False
    assert "task_config.steps" in bad.json()["errors"][0]


async def test_health_ready_and_openapi_need_no_token_and_everything_else_does(api: Api) -> None:
    assert (await api.client.get("/health")).json() == {"status": "ok"}
    ready = await api.client.get("/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["projections"]["tasks_lag"] == 0
    schema = await api.client.get("/schema/openapi.json")
    assert schema.json()["openapi"].startswith("3.1")
    unauthenticated = await api.client.get(f"{BASE}/ai-tasks/")
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["www-authenticate"] == "Bearer"


async def test_the_openapi_document_has_a_schema_for_every_body_and_response(api: Api) -> None:
    document = (await api.client.get("/schema/openapi.json")).json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method == "post" and path.endswith(("/ai-tasks", "validate-task-config")):
                assert operation["requestBody"]["content"]["application/json"]["schema"], path
            for status, response in operation["responses"].items():
                if status.startswith("2") and status != "204":  # 204: no body to describe
                    [(media_type, content)] = response["content"].items()
                    assert media_type in ("application/json", "text/event-stream"), path
                    assert content["schema"], (path, method)


async def test_racing_requests_with_one_idempotency_key_all_get_the_one_task(api: Api) -> None:
    import asyncio

    headers = {**ALICE, "Idempotency-Key": "raced"}
    responses = await asyncio.gather(
        *(api.client.post(f"{BASE}/ai-tasks/", json=summary(), headers=headers) for _ in range(8))
    )
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert (await api.client.get(f"{BASE}/ai-tasks/", headers=ALICE)).json()["count"] == 1
