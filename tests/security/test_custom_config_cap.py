"""Issue 14: a custom task's free `custom_config` is capped (it goes into every model step's
prompt), and user JSON in it is stored and read back whatever its shape.

Each test failed on the code before the change: `custom_config` was refused as an unknown
field whatever its size, so neither our limit's message nor an accepted one could be seen.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agenttasks.application.task_configs import MAX_CUSTOM_CONFIG_BYTES
from agenttasks.servers.nats import EmbeddedNats
from tests.integration.api_client import Api, bearer, running_api

BASE = "/api/v1/utils"
ALICE = bearer("alice")


@pytest.fixture
async def api(database_url: str, nats_server: EmbeddedNats) -> AsyncIterator[Api]:
    async with running_api(database_url, nats_server) as api:
        yield api


def custom(custom_config: object) -> dict[str, object]:
    config = {"custom_config": custom_config, "steps": ["go"]}
    return {"title": "c", "task_type": "custom", "task_config": config}


async def test_a_custom_config_over_the_cap_is_a_400_in_our_words(api: Api) -> None:
    # A JSON string of n characters encodes to n + 2 bytes.
    over = custom("x" * (MAX_CUSTOM_CONFIG_BYTES - 1))
    answer = await api.client.post(f"{BASE}/ai-tasks/", json=over, headers=ALICE)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    expected = (
        f"task_config.custom_config is {MAX_CUSTOM_CONFIG_BYTES + 1} bytes as JSON; "
        f"the limit is {MAX_CUSTOM_CONFIG_BYTES}"
    )
    assert expected in answer.text
    listed = await api.client.get(f"{BASE}/ai-tasks/", headers=ALICE)
    assert listed.json()["count"] == 0
    at_the_cap = custom("x" * (MAX_CUSTOM_CONFIG_BYTES - 2))
    accepted = await api.client.post(f"{BASE}/ai-tasks/", json=at_the_cap, headers=ALICE)
    assert accepted.status_code == 201, accepted.text


async def test_a_custom_config_shaped_like_a_stored_tag_reads_back_as_sent(api: Api) -> None:
    # eventsourcing's JSON decodes {"_type_", "_data_"} as a tagged value (NOTES.md).
    tagged = {"_type_": "uuid", "_data_": "not-a-uuid", "nested": [{"_type_": "datetime"}]}
    created = await api.client.post(f"{BASE}/ai-tasks/", json=custom(tagged), headers=ALICE)
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    again = await api.client.get(f"{BASE}/ai-tasks/{task_id}/", headers=ALICE)
    assert again.json()["task_config"]["custom_config"] == tagged
    events = await api.client.get(f"{BASE}/ai-tasks/{task_id}/events/", headers=ALICE)
    assert events.status_code == 200, events.text
    [stored] = events.json()["results"]
    assert stored["data"]["task_config"]["custom_config"] == tagged
