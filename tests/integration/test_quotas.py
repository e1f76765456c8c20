"""Quotas across API replicas: two `agenttasks api` processes on one database count together."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from pathlib import Path
from uuid import UUID

import httpx

from agenttasks.application.tasks import Actor
from agenttasks.domain.task import Task
from agenttasks.servers.nats import EmbeddedNats
from tests.fakes.llm_server import serve_llm, slow
from tests.integration.api_client import bearer
from tests.integration.live_harness import BASE
from tests.integration.stack import running_stack
from tests.integration.test_live_two_apis import api_process, ready_client
from tests.integration.worker_harness import create, events, finished
from tests.waiting import wait_until

ADMIN = bearer("root", admin=True)
BODY = {"title": "t", "task_type": "summary", "task_config": {"content": "x"}}


def assert_refused(response: httpx.Response, which: str) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["limit"] == which
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["RateLimit-Remaining"] == "0"
    assert int(response.headers["RateLimit-Reset"]) >= 1
    assert response.headers["RateLimit-Policy"].startswith(response.headers["RateLimit-Limit"])
    assert "try again" in problem["detail"]


async def test_limits_hold_whichever_of_two_api_processes_gets_the_request(
    database_url: str, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    # A day's window: the test cannot straddle a window's end unless it runs across midnight UTC.
    limits = {"rate_limit": "4/day", "limits_cache_seconds": "0"}
    async with running_stack(database_url, nats_server) as stack:
        with (
            api_process(database_url, nats_server, tmp_path / "one", **limits) as (one_url, _),
            api_process(database_url, nats_server, tmp_path / "two", **limits) as (two_url, _),
        ):
            async with (
                ready_client(one_url, tmp_path / "one") as one,
                ready_client(two_url, tmp_path / "two") as two,
            ):
                alice = bearer("alice")
                url = f"{BASE}/ai-tasks/"
                # The rate: four creations a day in all, whichever process takes them.
                answers = [
                    await (one, two)[i % 2].post(url, json=BODY, headers=alice) for i in range(4)
                ]
                assert [a.status_code for a in answers] == [201] * 4
                assert [a.headers["RateLimit-Remaining"] for a in answers] == ["3", "2", "1", "0"]
                assert_refused(await one.post(url, json=BODY, headers=alice), "rate")
                assert_refused(await two.post(url, json=BODY, headers=alice), "rate")
                # Another user has their own count.
                assert (await two.post(url, json=BODY, headers=bearer("bob"))).status_code == 201

                # An admin's override, set through one process, holds on the other.
                carol = bearer("carol")
                limits_url = f"{BASE}/users/carol/limits/"
                override = {"rate_limit": "off", "max_active_tasks": 2}
                assert (await one.put(limits_url, json=override, headers=carol)).status_code == 403
                answer = await one.put(limits_url, json=override, headers=ADMIN)
                assert answer.status_code == 200, answer.text
                assert answer.json()["max_active_tasks"] == 2
                seen = (await two.get(limits_url, headers=carol)).json()
                assert seen["rate_limit"] == "off"
                assert seen["rate_limit_source"] == "user"
                assert (await two.get(limits_url, headers=alice)).status_code == 403

                # Active tasks: eight creates at once over both processes, two get through.
                racing = await asyncio.gather(
                    *((one, two)[i % 2].post(url, json=BODY, headers=carol) for i in range(8))
                )
                statuses = sorted(a.status_code for a in racing)
                assert statuses == [201, 201] + [429] * 6, [a.text for a in racing]
                assert_refused(next(a for a in racing if a.status_code == 429), "active")
                first, second = (UUID(a.json()["id"]) for a in racing if a.status_code == 201)

                # One finishes: a slot is free again, on either process.
                stack.commands.start(first, 1, "w1")
                stack.commands.fail(first, 1, "crashed", "it broke")

                async def failed() -> bool:
                    task = (await one.get(f"{url}{first}/", headers=carol)).json()
                    return bool(task["status"] == "failed")

                await wait_until(failed)
                third = await two.post(url, json=BODY, headers=carol)
                assert third.status_code == 201
                # A retry by hand makes a task active again: it counts too.
                assert_refused(await one.post(f"{url}{first}/retry/", headers=carol), "active")
                stack.commands.cancel(Actor("carol"), second)

                async def cancelled() -> bool:
                    task = (await two.get(f"{url}{second}/", headers=carol)).json()
                    return bool(task["status"] == "cancelled")

                await wait_until(cancelled)
                retried = await one.post(f"{url}{first}/retry/", headers=carol)
                assert retried.status_code == 200, retried.text


def worker_process(
    database_url: str, nats_url: str, llm_url: str, log: Path
) -> subprocess.Popen[bytes]:
    """`agenttasks worker` in its own process, one running task per user over all workers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTTASKS_", "OPENAI_"))}
    env.update(
        AGENTTASKS_DATABASE_URL=database_url,
        AGENTTASKS_NATS_URL=nats_url,
        AGENTTASKS_MAX_RUNNING_PER_USER="1",
        AGENTTASKS_HOME=str(log.parent),
        OPENAI_API_KEY="test-key",
        OPENAI_BASE_URL=llm_url,
        AGENTTASKS_MODEL="fake-gpt",
        PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "agenttasks.cli", "worker", "--ack-wait", "2"],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


async def test_one_users_tasks_run_one_at_a_time_over_two_worker_processes(
    database_url: str, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    async with serve_llm() as fake, running_stack(database_url, nats_server) as stack:
        fake.script(*(slow(0.05, text="one two three four five six") for _ in range(8)))
        workers = [
            worker_process(
                database_url, nats_server.url_for("worker"), fake.base_url, tmp_path / f"w{i}.log"
            )
            for i in range(2)
        ]
        try:
            logs = [tmp_path / f"w{i}.log" for i in range(2)]
            # Both are taking messages (their consumers bound) before any task exists.
            await wait_until(
                lambda: all("concurrency" in log.read_text() for log in logs), within=60
            )
            ann = [create(stack, "content_generation", {"topic": f"t{i}"}) for i in range(4)]
            bob = [create(stack, "content_generation", {"topic": "b"}, Actor("bob"))]
            done = [await finished(stack, task_id, within=60) for task_id in ann + bob]
        finally:
            for process in workers:
                process.terminate()
            for process in workers:
                process.wait(15)
        assert [task.status for task in done] == ["completed"] * 5
        spans = []
        for task_id in ann:
            history = events(stack, task_id)
            started = next(e for e in history if isinstance(e, Task.Started))
            ended = next(e for e in history if isinstance(e, Task.Completed))
            spans.append((started.timestamp, ended.timestamp, started.worker_id))
        spans.sort()
        # Never two of ann's attempts at once, though each worker could run eight.
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans
        assert len({worker for _, _, worker in spans}) == 2, spans  # both took some
