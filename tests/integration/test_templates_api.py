"""Templates and statistics over HTTP, on real Postgres and NATS with every projector running."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import httpx
import pytest

from agenttasks.servers.nats import EmbeddedNats
from tests.integration.api_client import Api, bearer, serving, settings_for
from tests.integration.stack import running_stack
from tests.integration.test_api_tasks import TASK_FIELDS
from tests.integration.test_statistics import NAMES, all_projections

BASE = "/api/v1/utils"
TEMPLATES = f"{BASE}/ai-task-templates"
ALICE, BOB, ADMIN = bearer("alice"), bearer("bob"), bearer("root", admin=True)
PROBLEM = "application/problem+json"
SCHEMA = {
    "type": "object",
    "properties": {
        "topic": {"type": "string", "minLength": 3},
        "length": {"type": "integer", "maximum": 800},
    },
    "required": ["topic"],
}


@pytest.fixture
async def api(database_url: str, nats_server: EmbeddedNats) -> AsyncIterator[Api]:
    async with (
        running_stack(database_url, nats_server, projections=all_projections()) as stack,
        serving(settings_for(database_url, nats_server)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield Api(client, stack, url)


def blog(**extra: Any) -> dict[str, Any]:
    return {
        "name": "Blog post",
        "task_type": "content_generation",
        "default_config": {"topic": "Templates", "tone": "casual", "length": 300},
        "config_schema": SCHEMA,
        **extra,
    }


async def create(api: Api, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await api.client.post(f"{TEMPLATES}/", json=blog(**body), headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def problem_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    return body


async def test_a_template_is_created_read_revised_listed_and_archived(api: Api) -> None:
    template = await create(api, ALICE, description="Casual posts")
    assert (template["version"], template["owner"], template["archived"]) == (1, "alice", False)
    assert template["usage"]["usage_count"] == 0
    url = f"{TEMPLATES}/{template['id']}/"
    assert (await api.client.get(url, headers=ALICE)).json() == template

    revised = await api.client.put(url, json={"name": "Blog", "shared": True}, headers=ALICE)
    assert revised.status_code == 200, revised.text
    assert (revised.json()["version"], revised.json()["name"]) == (2, "Blog")
    assert revised.json()["description"] == "Casual posts", "omitted fields are kept"
    again = await api.client.put(url, json={"name": "Blog"}, headers=ALICE)
    assert again.json()["version"] == 2, "a PUT that changes nothing adds no version"

    listed = await api.client.get(f"{TEMPLATES}/?task_type=content_generation", headers=ALICE)
    assert [t["id"] for t in listed.json()["results"]] == [template["id"]]

    deleted = await api.client.delete(url, headers=ALICE)
    assert deleted.status_code == 204
    assert (await api.client.delete(url, headers=ALICE)).status_code == 204
    assert (await api.client.get(url, headers=ALICE)).json()["archived"] is True
    assert (await api.client.get(f"{TEMPLATES}/", headers=ALICE)).json()["count"] == 0
    refused = await api.client.post(f"{url}create_task/", headers=ALICE)
    assert "archived" in problem_of(refused, 409)["detail"]
    refused_put = await api.client.put(url, json={"name": "x"}, headers=ALICE)
    assert "archived" in problem_of(refused_put, 409)["detail"]


async def test_a_task_from_a_template_merges_overrides_and_answers_like_a_new_task(
    api: Api,
) -> None:
    template = await create(api, ALICE)
    url = f"{TEMPLATES}/{template['id']}/create_task/"
    response = await api.client.post(
        url, json={"task_config": {"length": 600}, "priority": "high"}, headers=ALICE
    )
    assert response.status_code == 201, response.text
    task = response.json()
    assert set(task) == TASK_FIELDS
    assert (task["title"], task["priority"], task["template_id"]) == (
        "Blog post", "high", template["id"],
    )  # fmt: skip
    assert task["task_config"]["length"] == 600
    assert task["task_config"]["tone"] == "casual"
    read = await api.client.get(f"{BASE}/ai-tasks/{task['id']}/", headers=ALICE)
    assert read.json() == task
    stored = api.stack.commands.store.repository.get(task["id"])
    assert stored.template_version == 1

    headers = {**ALICE, "Idempotency-Key": "post-1"}
    first = await api.client.post(url, json={"title": "Once"}, headers=headers)
    repeat = await api.client.post(url, json={"title": "Once"}, headers=headers)
    assert (first.status_code, repeat.status_code) == (201, 200)
    assert first.json()["id"] == repeat.json()["id"]

    detail = await api.client.get(f"{TEMPLATES}/{template['id']}/", headers=ALICE)
    await api.stack.projected("template_usage")
    detail = await api.client.get(f"{TEMPLATES}/{template['id']}/", headers=ALICE)
    assert detail.json()["usage"]["usage_count"] == 2


async def test_every_bad_input_is_a_problem_naming_the_field(api: Api) -> None:
    bad_schema = await api.client.post(
        f"{TEMPLATES}/", json=blog(config_schema={"type": "object", "required": "topic"}),
        headers=ALICE,
    )  # fmt: skip
    assert "config_schema.required" in problem_of(bad_schema, 400)["detail"]
    bad_default = await api.client.post(
        f"{TEMPLATES}/", json=blog(default_config={"topic": "ab"}), headers=ALICE
    )
    assert problem_of(bad_default, 400)["errors"] == ["`default_config.topic`: 'ab' is too short"]
    unknown_field = await api.client.post(f"{TEMPLATES}/", json=blog(colour="red"), headers=ALICE)
    assert "colour" in problem_of(unknown_field, 400)["detail"]
    empty_name = await api.client.post(f"{TEMPLATES}/", json=blog(name=""), headers=ALICE)
    assert "name" in problem_of(empty_name, 400)["detail"]

    template = await create(api, ALICE)
    bad_task = await api.client.post(
        f"{TEMPLATES}/{template['id']}/create_task/",
        json={"task_config": {"length": 5000, "mood": "odd"}},
        headers=ALICE,
    )
    assert problem_of(bad_task, 400)["errors"] == [
        "`task_config.length`: 5000 is greater than the maximum of 800",
        "task_config has unknown field `mood`",
    ]
    bad_put = await api.client.put(
        f"{TEMPLATES}/{template['id']}/", json={"default_config": {"length": 1}}, headers=ALICE
    )
    assert "default_config" in problem_of(bad_put, 400)["detail"]
    bad_ordering = await api.client.get(f"{TEMPLATES}/?ordering=colour", headers=ALICE)
    assert "ordering must be one of" in problem_of(bad_ordering, 400)["detail"]
    bad_since = await api.client.get(f"{BASE}/task-statistics/?since=yesterday", headers=ALICE)
    assert "`since`" in problem_of(bad_since, 400)["detail"]
    bad_scope = await api.client.get(f"{BASE}/task-statistics/?scope=everyone", headers=ALICE)
    assert "scope" in problem_of(bad_scope, 400)["detail"]


async def test_templates_are_private_unless_shared_and_admins_see_all(api: Api) -> None:
    private = await create(api, ALICE, name="Private")
    shared = await create(api, ALICE, name="Shared", shared=True)
    assert problem_of(await api.client.get(f"{TEMPLATES}/{private['id']}/", headers=BOB), 404)
    missing = await api.client.get(f"{TEMPLATES}/{uuid4()}/", headers=BOB)
    assert problem_of(missing, 404)["detail"] == "no such template"
    bob_task = await api.client.post(f"{TEMPLATES}/{private['id']}/create_task/", headers=BOB)
    assert problem_of(bob_task, 404)
    assert (await api.client.get(f"{TEMPLATES}/{shared['id']}/", headers=BOB)).status_code == 200
    used = await api.client.post(f"{TEMPLATES}/{shared['id']}/create_task/", headers=BOB)
    assert used.status_code == 201
    assert used.json()["created_by"] == "bob"
    change = await api.client.put(f"{TEMPLATES}/{shared['id']}/", json={"name": "x"}, headers=BOB)
    assert "owner" in problem_of(change, 403)["detail"]
    assert problem_of(await api.client.delete(f"{TEMPLATES}/{shared['id']}/", headers=BOB), 403)

    names = lambda r: sorted(t["name"] for t in r.json()["results"])  # noqa: E731
    assert names(await api.client.get(f"{TEMPLATES}/", headers=BOB)) == ["Shared"]
    assert names(await api.client.get(f"{TEMPLATES}/", headers=ADMIN)) == ["Private", "Shared"]
    assert names(await api.client.get(f"{TEMPLATES}/?mine=true", headers=BOB)) == []
    assert (await api.client.get(f"{TEMPLATES}/", headers={})).status_code == 401


async def test_validate_task_config_checks_against_a_template(api: Api) -> None:
    template = await create(api, ALICE)
    url = f"{BASE}/validate-task-config/"
    body = {"task_type": "content_generation", "template_id": template["id"]}
    ok = await api.client.post(url, json={**body, "task_config": {"length": 700}}, headers=ALICE)
    assert ok.json() == {"valid": True, "errors": []}
    bad = await api.client.post(url, json={**body, "task_config": {"length": 900}}, headers=ALICE)
    assert bad.json() == {
        "valid": False,
        "errors": ["`task_config.length`: 900 is greater than the maximum of 800"],
    }
    wrong_type = await api.client.post(
        url, json={**body, "task_type": "summary", "task_config": {}}, headers=ALICE
    )
    assert wrong_type.json()["errors"] == [
        "task_type: the template makes 'content_generation' tasks, not 'summary'"
    ]
    hidden = await api.client.post(url, json={**body, "task_config": {}}, headers=BOB)
    assert problem_of(hidden, 404)["detail"] == "no such template"


async def test_popular_lists_the_most_used_visible_templates_first(api: Api) -> None:
    first = await create(api, ALICE, name="Second favourite", shared=True)
    second = await create(api, ALICE, name="Favourite", shared=True)
    private = await create(api, ALICE, name="Mine only")
    await create(api, ALICE, name="Never used", shared=True)
    for template, times in ((first, 1), (second, 3), (private, 5)):
        for _ in range(times):
            url = f"{TEMPLATES}/{template['id']}/create_task/"
            assert (await api.client.post(url, headers=ALICE)).status_code == 201
    await api.stack.projected("template_usage")
    bobs = await api.client.get(f"{TEMPLATES}/popular/", headers=BOB)
    assert [(t["name"], t["usage"]["usage_count"]) for t in bobs.json()] == [
        ("Favourite", 3), ("Second favourite", 1),
    ]  # fmt: skip
    alices = await api.client.get(f"{TEMPLATES}/popular/?limit=2", headers=ALICE)
    assert [t["name"] for t in alices.json()] == ["Mine only", "Favourite"]
    assert problem_of(await api.client.get(f"{TEMPLATES}/popular/?limit=0", headers=ALICE), 400)


async def test_statistics_over_http_for_oneself_or_for_everyone(api: Api) -> None:
    for headers in (ALICE, ALICE, BOB):
        body = {"title": "t", "task_type": "summary", "task_config": {"content": "x"}}
        assert (await api.client.post(f"{BASE}/ai-tasks/", json=body, headers=headers)).is_success
    await api.stack.projected("statistics")
    mine = await api.client.get(f"{BASE}/task-statistics/", headers=ALICE)
    assert mine.status_code == 200, mine.text
    assert (mine.json()["scope"], mine.json()["total"]) == ("mine", 2)
    assert mine.json()["by_status"]["pending"] == 2
    everyone = await api.client.get(f"{BASE}/task-statistics/?scope=all", headers=ADMIN)
    assert everyone.json()["total"] == 3
    refused = await api.client.get(f"{BASE}/task-statistics/?scope=all", headers=ALICE)
    assert "admins" in problem_of(refused, 403)["detail"]
    tomorrow = await api.client.get(
        f"{BASE}/task-statistics/?since=2999-01-01T00:00:00+01:00", headers=ALICE
    )
    assert tomorrow.status_code == 200, tomorrow.text
    assert tomorrow.json()["total"] == 0
    assert tomorrow.json()["since"] == "2998-12-31T23:00:00Z"
    by_date = await api.client.get(f"{BASE}/task-statistics/?since=2000-01-01", headers=ALICE)
    assert by_date.json()["total"] == 2


async def test_ready_reports_the_lag_of_every_read_model(api: Api) -> None:
    response = await api.client.get("/ready")
    lags = response.json()["checks"]["projections"]
    assert {f"{name}_lag" for name in NAMES} <= set(lags)
