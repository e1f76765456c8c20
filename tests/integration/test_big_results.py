"""Results have a size limit, so one event never grows past what the store and the bus carry."""

from __future__ import annotations

from typing import Any

from agenttasks.workers.context import MAX_RESULT_BYTES, AgentContext
from tests.integration.stack import running_stack
from tests.integration.worker_harness import create, finished, running_worker

ENVELOPE = len('{"summary":""}')


async def _twice_the_content(ctx: AgentContext) -> dict[str, Any]:
    return {"summary": ctx.config["content"] * 2}


async def test_a_result_at_the_limit_is_stored_and_one_over_it_fails_saying_why(
    database_url, nats_server
) -> None:
    at_limit = "a" * ((MAX_RESULT_BYTES - ENVELOPE) // 2)
    async with running_stack(database_url, nats_server) as stack:
        async with running_worker(stack, agents={"summary": _twice_the_content}):
            near = create(stack, "summary", {"content": at_limit})
            over = create(stack, "summary", {"content": at_limit + "b"})
            stored = await finished(stack, near)
            refused = await finished(stack, over)
        await stack.projected()
        rows = stack.rows(f"select status from tasks where id = '{near}'")
    assert stored.status == "completed", stored.error_message
    assert stored.result_data["summary"] == at_limit * 2
    assert rows == [("completed",)]
    assert (refused.status, refused.error_kind) == ("failed", "result_too_large")
    assert f"at most {MAX_RESULT_BYTES:,} bytes" in refused.error_message
