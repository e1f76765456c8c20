"""Webhook URLs cannot reach inside our network, and what a user registers is capped.

Before webhooks there was no such check (nor any way to make the service post anywhere): each
test here fails on the code without application/webhooks.py's guard and caps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agenttasks.application.webhooks import WebhookLimits
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.webhooks.sender import Sender
from tests.integration.api_client import bearer
from tests.integration.live_harness import LiveApi, running_live_api

HOOKS = "/api/v1/utils/webhooks/"
TASKS = "/api/v1/utils/ai-tasks/"
ALICE = bearer("alice")
PUBLIC = "93.184.215.14"  # a global unicast address; nothing is sent to it in these tests


async def fake_dns(host: str, port: int) -> list[str]:
    return {"hooks.example.test": [PUBLIC], "inside.example.test": [PUBLIC, "10.0.0.5"]}[host]


@pytest.fixture
async def api(database_url: str, nats_server: EmbeddedNats) -> AsyncIterator[LiveApi]:
    async with running_live_api(database_url, nats_server) as api:
        api.deps.webhooks.resolve = fake_dns
        yield api


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://127.0.0.1:8000/hook", "127.0.0.1 is not a public address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is not a public address"),
        ("http://[::ffff:10.0.0.1]/hook", "is not a public address"),
        ("https://inside.example.test/hook", "resolves to a non-public address (10.0.0.5)"),
        ("ftp://hooks.example.test/hook", "must be an http or https URL"),
        ("https://user:pw@hooks.example.test/hook", "must not carry credentials"),
    ],
)
async def test_a_webhook_to_a_private_address_is_refused_on_registration_and_on_create(
    api: LiveApi, url: str, said: str
) -> None:
    response = await api.client.post(HOOKS, json={"url": url}, headers=ALICE)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert said in response.json()["detail"]
    body = {"title": "t", "task_type": "summary", "task_config": {"content": "x"}}
    response = await api.client.post(TASKS, json={**body, "webhook_url": url}, headers=ALICE)
    assert response.status_code == 400, response.text
    assert said in response.json()["detail"]
    listed = await api.client.get(TASKS, headers=ALICE)
    assert listed.json()["count"] == 0  # nothing was stored


TEMPLATES = "/api/v1/utils/ai-task-templates/"


async def test_a_task_from_a_template_takes_a_webhook_url_through_the_same_guard(
    api: LiveApi,
) -> None:
    template = await api.client.post(
        TEMPLATES, json={"name": "n", "task_type": "summary"}, headers=ALICE
    )
    assert template.status_code == 201, template.text
    create = f"{TEMPLATES}{template.json()['id']}/create_task/"
    body = {"task_config": {"content": "x"}}
    refused = await api.client.post(
        create, json={**body, "webhook_url": "http://127.0.0.1:8000/hook"}, headers=ALICE
    )
    assert refused.status_code == 400, refused.text
    assert "127.0.0.1 is not a public address" in refused.json()["detail"]
    url = "https://hooks.example.test/done"
    created = await api.client.post(create, json={**body, "webhook_url": url}, headers=ALICE)
    assert created.status_code == 201, created.text
    assert created.json()["webhook_url"] == url
    read = await api.client.get(f"{TASKS}{created.json()['id']}/", headers=ALICE)
    assert read.json()["webhook_url"] == url  # from the read model, not only the write's answer


async def test_a_webhook_url_over_the_length_cap_is_refused(api: LiveApi) -> None:
    url = "https://hooks.example.test/" + "a" * 2048
    response = await api.client.post(HOOKS, json={"url": url}, headers=ALICE)
    assert response.status_code == 400
    assert "the limit is 2048" in response.json()["detail"]
    body = {"title": "t", "task_type": "summary", "task_config": {}, "webhook_url": url}
    response = await api.client.post(TASKS, json={**body, "task_config": {"content": "x"}},
                                     headers=ALICE)  # fmt: skip
    assert response.status_code == 400
    assert "the limit is 2048" in response.json()["detail"]


async def test_endpoints_per_user_are_capped_with_a_429(api: LiveApi) -> None:
    api.deps.webhooks.limits = WebhookLimits(max_endpoints_per_user=2)
    for _ in range(2):
        answer = await api.client.post(
            HOOKS, json={"url": "https://hooks.example.test/h"}, headers=ALICE
        )
        assert answer.status_code == 201, answer.text
    answer = await api.client.post(
        HOOKS, json={"url": "https://hooks.example.test/h"}, headers=ALICE
    )
    assert answer.status_code == 429
    assert answer.json()["detail"] == "you have 2 webhook endpoints; the limit is 2"
    other = await api.client.post(
        HOOKS, json={"url": "https://hooks.example.test/h"}, headers=bearer("bob")
    )
    assert other.status_code == 201  # the cap is per user


async def test_the_deliverer_checks_the_address_again_before_sending() -> None:
    # DNS may answer differently at delivery than at registration (rebinding).
    async def rebound(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    sender = Sender(frozenset(), timeout=2, max_response_bytes=1024, resolver=rebound)
    try:
        answer = await sender.post("https://hooks.example.test/h", b"{}", {})
    finally:
        await sender.aclose()
    assert answer.status_code is None
    assert answer.error is not None
    assert "resolves to a non-public address (127.0.0.1)" in answer.error
