"""/metrics through the real stack: two API processes on one database agree on the system-wide
figures, and those move as tasks run; a non-API role answers on its metrics port."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID

import httpx
from prometheus_client.parser import text_string_to_metric_families

from agenttasks.projections.metrics import metrics_projection
from agenttasks.projections.tasks import task_projection
from agenttasks.servers.nats import EmbeddedNats
from tests.conftest import free_port
from tests.integration.api_client import bearer
from tests.integration.live_harness import BASE
from tests.integration.stack import running_stack
from tests.integration.test_live_two_apis import api_process, ready_client
from tests.waiting import wait_for_value

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
ALICE = bearer("alice-7f3e")  # a user id no label may carry
# Read from the store at scrape time (the oldest pending age too, but it grows between scrapes).
SYSTEM_WIDE = (
    "agenttasks_tasks_created", "agenttasks_tasks_completed", "agenttasks_tasks_failed",
    "agenttasks_tasks_cancelled", "agenttasks_tasks_retried", "agenttasks_tasks",
    "agenttasks_task_queue_wait_seconds", "agenttasks_task_run_seconds",
    "agenttasks_queue_backlog",
    "agenttasks_quarantined_events", "agenttasks_task_tokens",
)  # fmt: skip
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of the exposition (it must parse), by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def system_wide(found: Samples) -> Samples:
    return {
        key: v
        for key, v in found.items()
        if any(key[0] == n or key[0].startswith(n + "_") for n in SYSTEM_WIDE)
        and not key[0].endswith("_created")  # prometheus_client's creation-time samples
    }


@contextmanager
def relay_process(
    database_url: str, nats: EmbeddedNats, home: Path, metrics_port: int
) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "AGENTTASKS_DATABASE_URL": database_url,
        "AGENTTASKS_NATS_URL": nats.url_for("relay"),
        "AGENTTASKS_METRICS_PORT": str(metrics_port),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"),
    }
    home.mkdir(parents=True, exist_ok=True)
    with (home / "relay.log").open("wb") as log:
        command = [sys.executable, "-c", "from agenttasks.cli import main; main()", "relay"]
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.terminate()
            process.wait(15)


async def test_two_api_replicas_report_the_same_task_figures_and_they_move_as_tasks_run(
    database_url: str, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    projections = (task_projection(), metrics_projection())
    metrics_port = free_port()
    async with running_stack(database_url, nats_server, projections=projections) as stack:
        with (
            api_process(database_url, nats_server, tmp_path / "one", metrics_cache_seconds="1") as (
                one_url,
                _,
            ),
            api_process(database_url, nats_server, tmp_path / "two", metrics_cache_seconds="1") as (
                two_url,
                _,
            ),
            relay_process(database_url, nats_server, tmp_path / "relay", metrics_port),
        ):
            async with (
                ready_client(one_url, tmp_path / "one") as one,
                ready_client(two_url, tmp_path / "two") as two,
            ):
                before = samples((await one.get("/metrics")).text)
                assert value(before, "agenttasks_tasks_created_total", task_type="summary") == 0

                body = {"title": "t", "task_type": "summary", "task_config": {"content": "x"}}
                ids = []
                for client in (one, two, one):
                    answer = await client.post(f"{BASE}/ai-tasks/", json=body, headers=ALICE)
                    assert answer.status_code == 201, answer.text
                    ids.append(UUID(answer.json()["id"]))
                await one.get(f"{BASE}/ai-tasks/{ids[0]}/", headers=ALICE)
                commands = stack.commands
                commands.start(ids[0], 1, "w1")
                for step, (model, cost) in enumerate(
                    [("gpt-test", "0.000125"), ("gpt-test", None), ("bad name {x}", "0.5")], 1
                ):
                    call = {
                        "step": step, "model": model, "provider": "models.example",
                        "prompt_tokens": 100, "completion_tokens": 20, "cached_tokens": 0,
                        "usage": "reported", "latency_ms": 5, "cost_usd": cost,
                        "price_source": "AGENTTASKS_PRICES", "price_version": None,
                    }  # fmt: skip
                    commands.record_model_call(ids[0], 1, call)
                commands.complete(ids[0], 1, {"summary": "done", "usage": {"prompt_tokens": 7}})
                commands.start(ids[1], 1, "w1")
                # A kind no list knows (workers may write anything): it must become "other".
                commands.fail(ids[1], 1, f"kind-of-{ids[1]}", "broke", retryable=False)
                await stack.projected("metrics")

                async def scrape(client: httpx.AsyncClient) -> Samples:
                    return samples((await client.get("/metrics")).text)

                def settled(found: Samples) -> bool:
                    done = value(found, "agenttasks_tasks_completed_total", task_type="summary")
                    return done == 1

                on_one = await wait_for_value(lambda: scrape(one), settled, 15)
                on_one_text = (await one.get("/metrics")).text
                on_two = await wait_for_value(lambda: scrape(two), settled, 15)

                relay_metrics = await wait_for_value(
                    lambda: _get(f"http://127.0.0.1:{metrics_port}/metrics"),
                    lambda text: text is not None,
                    30,
                )

    for found in (on_one, on_two):
        assert value(found, "agenttasks_tasks_created_total", task_type="summary") == 3
        assert value(found, "agenttasks_tasks_created_total", task_type="research") == 0
        wait_count = value(found, "agenttasks_task_queue_wait_seconds_count", task_type="summary")
        assert wait_count == 2
        assert value(found, "agenttasks_task_run_seconds_count", task_type="summary") == 2
        failed = {"task_type": "summary", "error_kind": "other"}
        assert value(found, "agenttasks_tasks_failed_total", **failed) == 1
        assert value(found, "agenttasks_tasks", task_type="summary", status="pending") == 1
        assert value(found, "agenttasks_tasks", task_type="summary", status="completed") == 1
        kind = {"task_type": "summary", "kind": "prompt"}
        assert value(found, "agenttasks_task_tokens_total", **kind) == 7
        assert value(found, "agenttasks_queue_oldest_age_seconds") > 0
        by_model = {"model": "gpt-test", "task_type": "summary"}
        assert value(found, "agenttasks_model_calls_total", **by_model) == 2
        assert value(found, "agenttasks_model_unpriced_calls_total", **by_model) == 1
        assert value(found, "agenttasks_model_tokens_total", **by_model, kind="prompt") == 200
        assert value(found, "agenttasks_model_cost_usd_total", **by_model) == 0.000125
        other = {"model": "other", "task_type": "summary"}
        assert value(found, "agenttasks_model_cost_usd_total", **other) == 0.5
        assert value(found, "agenttasks_metrics_source_up", source="postgres") == 1
        assert ("agenttasks_postgres_notify_queue_usage", ()) in found  # 0 here: all read
        assert value(found, "agenttasks_metrics_source_up", source="nats") == 1
        labels = " ".join(f"{k}={v}" for (_, pairs) in found for k, v in pairs)
        assert "alice" not in labels
        assert not any(str(task_id) in labels for task_id in ids)
    assert system_wide(on_one) == system_wide(on_two)
    # HTTP (per process; replica one served the GET of a task): by route template, never the path.
    paths = {dict(labels).get("path") for (_, labels) in on_one}
    assert {"/api/v1/utils/ai-tasks", "/api/v1/utils/ai-tasks/{task_id}"} <= paths
    assert relay_metrics is not None
    relay = samples(relay_metrics)
    assert value(relay, "agenttasks_role_info", role="relay") == 1

    # The Grafana dashboard: valid JSON, and every expression names metrics that are exported.
    exported = {name for (name, _) in on_one} | {name for (name, _) in relay}
    for family in text_string_to_metric_families(on_one_text):  # families with no sample yet
        exported.add(family.name + ("_total" if family.type == "counter" else ""))
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) >= 15
    named = {n for expr in exprs for n in re.findall(r"\bagenttasks_[a-z_]+", expr)}
    assert named, exprs
    assert named - exported == set()


async def _get(url: str) -> str | None:
    async with httpx.AsyncClient(timeout=5) as client:
        try:
            answer = await client.get(url)
        except httpx.TransportError:
            return None  # not listening yet
    return answer.text if answer.status_code == 200 else None
