"""Every example request of the guide users come from (../shared/seed-guide.md) is accepted as
written (issue 14, item 1), and its field names are there beside ours.

The examples are copied here from the guide's text, each with the section it comes from, so this
test does not depend on a file outside the repository.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import httpx
import pytest

from agenttasks.api.auth import mint_token
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.workers.llm import OpenAIModel
from tests.fakes.llm_server import serve_llm, slow
from tests.integration.api_client import SECRET, Api, serving, settings_for
from tests.integration.stack import running_stack
from tests.integration.test_statistics import all_projections
from tests.integration.worker_harness import finished, running_worker

BASE = "/api/v1/utils"
# The guide's curl examples send `Authorization: Bearer YOUR_TOKEN`.
HEADERS = {"Authorization": f"Bearer {mint_token(SECRET, 'guide-user')}"}

# "Supported Task Types": the **Configuration** block of each type, as written.
CONFIGS: dict[str, dict[str, Any]] = {
    # "1. Content Summarization (`summary`)"
    "summary": {
        "content": "Text to summarize (optional)",
        "urls": ["https://example.com/article1", "https://example.com/article2"],
        "max_length": 500,
    },
    # "2. Research & Analysis (`research`)"
    "research": {
        "topic": "AI Ethics",
        "urls": ["https://source1.com", "https://source2.com"],
        "questions": ["What are the main concerns?", "What solutions exist?"],
    },
    # "3. Content Generation (`content_generation`)"
    "content_generation": {
        "topic": "Latest AI Trends",
        "content_type": "blog_post",
        "length": 1200,
        "tone": "professional",
        "keywords": ["AI", "machine learning", "automation"],
    },
    # "4. Data Analysis (`data_analysis`)"
    "data_analysis": {"data": {"values": [1, 2, 3, 4, 5]}, "analysis_type": "statistical"},
    # "5. Custom Tasks (`custom`)"
    "custom": {"custom_config": "Any custom parameters", "steps": ["step1", "step2", "step3"]},
}

# "Example Usage" > "Create a Summary Task": the curl body, as written.
CREATE_SUMMARY = """{
    "title": "Summarize News Articles",
    "task_type": "summary",
    "task_config": {
      "urls": ["https://example.com/article1", "https://example.com/article2"],
      "max_length": 300
    },
    "priority": "high"
  }"""


@pytest.fixture
async def api(database_url: str, nats_server: EmbeddedNats) -> AsyncIterator[Api]:
    # Every read model: the guide's statistics and template examples read them all.
    async with (
        running_stack(database_url, nats_server, projections=all_projections()) as stack,
        serving(settings_for(database_url, nats_server)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield Api(client, stack, url)


async def post(api: Api, path: str, body: str) -> Any:
    headers = {**HEADERS, "Content-Type": "application/json"}
    answer = await api.client.post(f"{BASE}{path}", content=body, headers=headers)
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


@pytest.mark.parametrize("task_type", list(CONFIGS))
async def test_each_task_type_configuration_of_the_guide_is_accepted(
    api: Api, task_type: str
) -> None:
    config = CONFIGS[task_type]
    check = {"task_type": task_type, "task_config": config}
    assert await post(api, "/validate-task-config/", json.dumps(check)) == {
        "valid": True,
        "errors": [],
    }
    body = {"title": f"Guide {task_type}", "task_type": task_type, "task_config": config}
    task = await post(api, "/ai-tasks/", json.dumps(body))
    for field, value in config.items():
        assert task["task_config"][field] == value  # kept as given (defaults added beside)


async def test_the_guides_create_a_summary_task_example_runs_as_written(api: Api) -> None:
    task = await post(api, "/ai-tasks/", CREATE_SUMMARY)
    assert (task["title"], task["task_type"], task["priority"]) == (
        "Summarize News Articles",
        "summary",
        "high",
    )
    assert task["task_config"]["max_length"] == 300
    # "Get Task Statistics": curl .../task-statistics/ with the Bearer header.
    await api.stack.projected("statistics")
    statistics = await api.client.get(f"{BASE}/task-statistics/", headers=HEADERS)
    assert statistics.status_code == 200, statistics.text
    assert statistics.json()["total"] == 1


async def test_the_guides_monitor_task_progress_example_streams_its_updates(api: Api) -> None:
    task = await post(api, "/ai-tasks/", CREATE_SUMMARY)
    cancelled = await post(api, f"/ai-tasks/{task['id']}/cancel/", "{}")
    assert cancelled["status"] == "cancelled"
    # "Monitor Task Progress": curl -N .../tasks/{TASK_ID}/stream/ with the Bearer header;
    # "Real-time Updates": the page reads `update.progress` and `update.message`.
    url = f"{BASE}/tasks/{task['id']}/stream/"
    async with api.client.stream("GET", url, headers=HEADERS) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        updates = [
            json.loads(line.removeprefix("data:"))
            async for line in stream.aiter_lines()
            if line.startswith("data:")
        ]
    assert [u["type"] for u in updates] == ["created", "cancelled"]
    for update in updates:
        assert isinstance(update["progress"], int)
        assert isinstance(update["message"], str)
        assert update["progress_percentage"] == update["progress"]


async def test_the_guides_field_names_stand_beside_ours(api: Api) -> None:
    # "AIAgentTaskUpdate": `progress_percentage`; "AIAgentTaskTemplate": `usage_count`.
    template = await post(
        api,
        "/ai-task-templates/",
        json.dumps({"name": "Digest", "task_type": "summary", "default_config": {"content": "x"}}),
    )
    assert template["usage_count"] == template["usage"]["usage_count"] == 0
    for field in ("name", "task_type", "default_config", "config_schema"):
        assert field in template
    task = await post(api, f"/ai-task-templates/{template['id']}/create_task/", "{}")
    await api.stack.projected("template_usage")
    again = await api.client.get(f"{BASE}/ai-task-templates/{template['id']}/", headers=HEADERS)
    assert again.json()["usage_count"] == again.json()["usage"]["usage_count"] == 1
    listed = await api.client.get(f"{BASE}/ai-task-templates/", headers=HEADERS)
    assert [t["usage_count"] for t in listed.json()["results"]] == [1]
    updates = await api.client.get(f"{BASE}/ai-tasks/{task['id']}/updates/", headers=HEADERS)
    assert [u["progress_percentage"] for u in updates.json()["results"]] == [0]
    assert UUID(task["template_id"]) == UUID(template["id"])


async def test_a_task_past_its_timeout_is_failed_with_error_kind_timeout(api: Api) -> None:
    # Where we differ on purpose: the guide cancels stuck tasks; ours fail, saying why.
    async with serve_llm() as fake:
        llm = OpenAIModel(api_key="test-key", base_url=fake.base_url, model="fake-gpt")
        fake.script(slow(0.5))  # far longer than the task may take
        async with running_worker(api.stack, llm=llm):
            body = {
                "title": "Too slow",
                "task_type": "summary",
                "task_config": {"content": "Text to summarize"},
                "timeout_seconds": 1,
            }
            task = await post(api, "/ai-tasks/", json.dumps(body))
            await finished(api.stack, UUID(task["id"]))
        await llm.aclose()
    await api.stack.projected()
    shown = await api.client.get(f"{BASE}/ai-tasks/{task['id']}/", headers=HEADERS)
    assert (shown.json()["status"], shown.json()["error_kind"]) == ("failed", "timeout")
