"""kill -9 of a worker process in the middle of a task: another worker takes the task over as a
new attempt, and the task completes exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from agenttasks.domain.task import Task
from agenttasks.workers.llm import OpenAIModel
from tests.fakes.llm_server import serve_llm, slow
from tests.integration.stack import running_stack
from tests.integration.worker_harness import create, events, finished, running_worker, with_options
from tests.waiting import wait_until


def worker_process(
    database_url: str, nats_url: str, llm_url: str, log: Path
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTTASKS_", "OPENAI_"))}
    env.update(
        AGENTTASKS_DATABASE_URL=database_url, AGENTTASKS_NATS_URL=nats_url,
        OPENAI_API_KEY="test-key", OPENAI_BASE_URL=llm_url, AGENTTASKS_MODEL="fake-gpt",
        AGENTTASKS_HOME=str(log.parent),
    )  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "agenttasks.cli", "worker", "--ack-wait", "1"],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip


async def test_a_killed_workers_task_completes_exactly_once_elsewhere(
    database_url, nats_server, tmp_path
) -> None:
    async with serve_llm() as fake, running_stack(database_url, nats_server) as stack:
        fake.script(slow(seconds_per_chunk=0.1))  # the first worker's stream never ends in time
        doomed = worker_process(
            database_url, nats_server.url_for("worker"), fake.base_url, tmp_path / "w.log"
        )
        try:
            task_id = create(stack, "content_generation", {"topic": "tides"})
            await wait_until(lambda: fake.open_streams == 1, within=30)
            await wait_until(lambda: len(events(stack, task_id)) >= 4)  # it streams partial results
        finally:
            os.kill(doomed.pid, signal.SIGKILL)
            doomed.wait(10)
        await wait_until(lambda: fake.open_streams == 0)  # the kernel closed its connection
        llm = OpenAIModel(api_key="test-key", base_url=fake.base_url, model="fake-gpt")
        async with running_worker(stack, llm=llm, options=with_options(ack_wait=1.0)) as survivor:
            done = await finished(stack, task_id)
            await wait_until(lambda: survivor.finished >= 2)  # the takeover, then attempt 2
        history = events(stack, task_id)
        await llm.aclose()
    assert done.status == "completed"
    assert done.attempt == 2
    assert done.worker_id == survivor.worker_id
    failed = [(e.attempt, e.error_kind) for e in history if isinstance(e, Task.Failed)]
    assert failed == [(1, "worker_lost")]
    assert sum(isinstance(e, Task.Completed) for e in history) == 1
    first_worker = next(e for e in history if isinstance(e, Task.Started)).worker_id
    assert first_worker != survivor.worker_id
    # Nothing of attempt 1 was stored after the takeover failed it.
    takeover = next(i for i, e in enumerate(history) if isinstance(e, Task.Failed))
    assert all(
        getattr(e, "attempt", 2) == 2
        for e in history[takeover + 1 :]
        if not isinstance(e, Task.Retried)
    )
