"""A custom task's free `custom_config` (the guide's example has one) reaches its steps: as
`{{custom_config}}` in a step's text, and ahead of every model step's prompt."""

from __future__ import annotations

import json

from agenttasks.workers.llm import OpenAIModel
from tests.fakes.llm_server import reply, serve_llm
from tests.integration.stack import running_stack
from tests.integration.worker_harness import create, finished, running_worker

PARAMETERS = {"audience": "board", "region": "nordics"}


async def test_a_step_names_the_custom_config_and_gets_it_offline(
    database_url, nats_server
) -> None:
    async with running_stack(database_url, nats_server) as stack, running_worker(stack):
        config = {"custom_config": "Any custom parameters", "steps": ["Use {{custom_config}}"]}
        done = await finished(stack, create(stack, "custom", config))
    assert done.status == "completed", done.error_message
    assert "carry out: Use Any custom parameters" in done.result_data["final"]


async def test_every_model_step_is_shown_the_custom_config(database_url, nats_server) -> None:
    async with serve_llm() as fake, running_stack(database_url, nats_server) as stack:
        llm = OpenAIModel(api_key="test-key", base_url=fake.base_url, model="fake-gpt")
        fake.script(reply("first"), reply("second"))
        async with running_worker(stack, llm=llm):
            config = {"custom_config": PARAMETERS, "steps": ["Outline", "Write it up"]}
            done = await finished(stack, create(stack, "custom", config))
        await llm.aclose()
    assert done.status == "completed", done.error_message
    prompts = [r.messages[-1]["content"] for r in fake.requests]
    expected = f"Task parameters (custom_config):\n{json.dumps(PARAMETERS, sort_keys=True)}"
    assert len(prompts) == 2
    assert all(prompt.startswith(expected) for prompt in prompts)


async def test_without_custom_config_the_prompts_are_as_before(database_url, nats_server) -> None:
    async with serve_llm() as fake, running_stack(database_url, nats_server) as stack:
        llm = OpenAIModel(api_key="test-key", base_url=fake.base_url, model="fake-gpt")
        fake.script(reply("only"))
        async with running_worker(stack, llm=llm):
            done = await finished(stack, create(stack, "custom", {"steps": ["Outline"]}))
        await llm.aclose()
    assert done.status == "completed", done.error_message
    assert [r.messages[-1]["content"] for r in fake.requests] == ["Outline"]
