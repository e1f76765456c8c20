"""Budgets and per-task caps against the real stack, the fake model and an AGENTTASKS_PRICES file.

Prices: 1,000 USD per million prompt tokens and 2,000 per million completion tokens, so a token
costs 0.001 or 0.002 USD and the fake model's usage (a token a word) gives round figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import nats
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from standardwebhooks import Webhook

from agenttasks import bootstrap
from agenttasks.application.budgets import alert_recorder
from agenttasks.application.price_file import read_price_file
from agenttasks.application.spend_ledger import Hold, Refused, SpendLedger
from agenttasks.application.tasks import Actor
from agenttasks.bus.connection import connect
from agenttasks.bus.messages import STREAM
from agenttasks.domain.budget import BudgetAlert, Limit, alert_id
from agenttasks.domain.task import Task
from agenttasks.servers.nats import EmbeddedNats
from agenttasks.servers.postgres import EmbeddedPostgres, create_database
from agenttasks.settings import Settings
from agenttasks.webhooks import store as webhook_tables
from agenttasks.workers.llm import OpenAIModel
from tests.fakes.http import LoopbackServer, Request, Response
from tests.fakes.llm_server import MODEL, FakeLlm, reply, serve_llm, status
from tests.integration.api_client import SECRET, bearer, serving, settings_for
from tests.integration.stack import Stack, running_stack
from tests.integration.worker_harness import create, events, finished, running_worker
from tests.waiting import wait_until

BASE = "/api/v1/utils"
ADMIN = bearer("root", admin=True)
PRICES = {MODEL: {"input_per_mtok": 1000, "output_per_mtok": 2000}}
ANSWER = "one two three four five"  # five completion tokens: 0.010 USD


@pytest.fixture(scope="module")
def prices_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prices") / "prices.json"
    path.write_text(json.dumps(PRICES))
    return path


@pytest.fixture(scope="module")
def module_database(postgres: EmbeddedPostgres) -> str:
    return create_database(postgres.url, "test_budgets")


@pytest.fixture(scope="module")
async def stack(module_database: str, module_nats: EmbeddedNats) -> AsyncIterator[Stack]:
    bootstrap.ensure_read_models(module_database)
    async with running_stack(module_database, module_nats) as running:
        yield running


@pytest.fixture  # one per test: a test's unused scripted replies must not reach the next
async def fake() -> AsyncIterator[FakeLlm]:
    async with serve_llm() as server:
        yield server


@pytest.fixture(scope="module")
async def api(stack: Stack, module_nats: EmbeddedNats) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_for(stack.database_url, module_nats).with_(budgets_cache_seconds=0)
    async with serving(settings) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        yield client


def worker_settings(stack: Stack, prices_file: Path, **changes: Any) -> Settings:
    return Settings(
        database_url=stack.database_url,
        prices=read_price_file(prices_file),
        budgets_cache_seconds=0,
    ).with_(**changes)


def model(fake: FakeLlm, name: str = MODEL) -> OpenAIModel:
    return OpenAIModel(api_key="test-key", base_url=fake.base_url, model=name)


def chain(steps: int, **config: Any) -> dict[str, Any]:
    return {"steps": [f"Say five words, step {n}." for n in range(steps)], **config}


def model_calls(stack: Stack, task_id: UUID) -> list[Task.ModelCalled]:
    return [e for e in events(stack, task_id) if isinstance(e, Task.ModelCalled)]


def ledger_spent(stack: Stack, user: str) -> Decimal:
    rows = stack.rows(
        f"SELECT spent FROM budget_ledger WHERE user_id = '{user}' AND period = 'day' "
        "AND period_start = date_trunc('day', now(), 'UTC')"
    )
    return Decimal(rows[0][0]) if rows else Decimal(0)


async def set_budget(api: httpx.AsyncClient, user: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = await api.put(f"{BASE}/users/{user}/budget/", json=body, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


async def test_a_chain_stops_at_the_budget_keeping_its_steps_and_the_next_create_is_refused(
    stack: Stack, api: httpx.AsyncClient, fake: FakeLlm, prices_file: Path
) -> None:
    # Each call: about 0.01 USD of prompt and 0.010 of answer; its reservation (max_tokens 20
    # of output, the prompt estimated high) is about 0.11. 0.15 leaves room for a few calls.
    await set_budget(api, "bob", {"budget": "0.15/day", "soft_limit_percent": 10})
    fake.script(*(reply(ANSWER) for _ in range(10)))
    settings = worker_settings(stack, prices_file)
    async with running_worker(stack, llm=model(fake), settings=settings):
        task_id = create(stack, "custom", chain(10, max_tokens=20), Actor("bob"))
        done = await finished(stack, task_id)
    assert done.status == "failed", done.error_message
    assert done.error_kind == "budget_exceeded"
    assert "budget of 0.15/day USD" in (done.error_message or "")
    assert "resets at" in (done.error_message or "")
    calls = model_calls(stack, task_id)
    # Stopped mid-chain: the steps before the stop are kept as events (their notes, their text).
    assert 1 <= len(calls) < 10
    notes = [e for e in events(stack, task_id) if isinstance(e, Task.Noted)]
    assert [n.data["step"] for n in notes] == list(range(1, len(calls) + 1))
    assert all(n.data["output"] == ANSWER for n in notes)
    spent = sum(Decimal(c.cost_usd or "x") for c in calls)
    assert ledger_spent(stack, "bob") == spent <= Decimal("0.15")

    # The soft limit (10 %: 0.015 USD) was passed: one alert for the day.
    view = (await api.get(f"{BASE}/users/bob/budget/", headers=bearer("bob"))).json()
    assert Decimal(view["spent_usd"]) == spent
    alert: object = stack.store.repository.get(alert_id("bob", _start(view["period_start"])))
    assert isinstance(alert, BudgetAlert)
    assert alert.user_id == "bob"
    assert Decimal(alert.soft_limit_usd) == Decimal("0.015")

    # An admin lowers the budget below what was spent: creating (and retrying) is refused.
    await set_budget(api, "bob", {"budget": "0.01/day"})
    body = {"title": "t", "task_type": "summary", "task_config": {"content": "x"}}
    refused = await api.post(f"{BASE}/ai-tasks/", json=body, headers=bearer("bob"))
    assert refused.status_code == 402, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["title"] == "Payment required"  # was "Error": 402 had no title of its own
    assert problem["budget"] == "0.01/day"
    assert problem["budget_source"] == "user"
    assert problem["resets_at"] == view["resets_at"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 86_400
    retried = await api.post(f"{BASE}/ai-tasks/{task_id}/retry/", headers=bearer("bob"))
    assert retried.status_code == 402, retried.text
    # Others are not concerned.
    assert (
        await api.post(f"{BASE}/ai-tasks/", json=body, headers=bearer("eve"))
    ).status_code == 201


def _start(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def test_the_per_task_caps_end_a_chain_naming_the_cap(
    stack: Stack, fake: FakeLlm, prices_file: Path
) -> None:
    fake.script(*(reply(ANSWER) for _ in range(20)))
    settings = worker_settings(stack, prices_file)
    async with running_worker(stack, llm=model(fake), settings=settings):
        by_tokens = create(stack, "custom", chain(10, max_total_tokens=150), Actor("cap"))
        by_cost = create(stack, "custom", chain(10, max_cost="0.20", max_tokens=10), Actor("cap"))
        tokens_done = await finished(stack, by_tokens)
        cost_done = await finished(stack, by_cost)
    for done in (tokens_done, cost_done):
        assert done.status == "failed"
        assert done.error_kind == "budget_exceeded"
    assert "max_total_tokens of 150" in (tokens_done.error_message or "")
    assert "max_cost of 0.2 USD" in (cost_done.error_message or "")
    used = sum(c.prompt_tokens + c.completion_tokens for c in model_calls(stack, by_tokens))
    assert 0 < used <= 150
    spent = sum(Decimal(c.cost_usd or "x") for c in model_calls(stack, by_cost))
    assert 0 < spent <= Decimal("0.20")


async def test_a_model_with_no_price_is_refused_when_a_budget_applies(
    stack: Stack, api: httpx.AsyncClient, fake: FakeLlm, prices_file: Path
) -> None:
    await set_budget(api, "una", {"budget": "5/month"})
    settings = worker_settings(stack, prices_file)
    async with running_worker(stack, llm=model(fake, "no-such-model"), settings=settings):
        task_id = create(stack, "custom", chain(2), Actor("una"))
        done = await finished(stack, task_id)
    assert done.error_kind == "budget_exceeded"
    assert "no known price" in (done.error_message or "")
    assert model_calls(stack, task_id) == []


def worker_process(
    stack: Stack, fake: FakeLlm, prices: Path, log: Path, concurrency: int = 8
) -> subprocess.Popen[bytes]:
    """`agenttasks worker` in its own process, with the price file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTTASKS_", "OPENAI_"))}
    env.update(
        AGENTTASKS_DATABASE_URL=stack.database_url,
        AGENTTASKS_NATS_URL=stack.nats.url_for("worker"),
        AGENTTASKS_HOME=str(log.parent),
        AGENTTASKS_PRICES=str(prices),
        AGENTTASKS_BUDGETS_CACHE_SECONDS="0",
        OPENAI_API_KEY="test-key",
        OPENAI_BASE_URL=fake.base_url,
        AGENTTASKS_MODEL=MODEL,
        PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "agenttasks.cli", "worker", "--ack-wait", "5",
         "--concurrency", str(concurrency), "--prefetch", "1"],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip


GATE_KEY = 18_018  # the advisory lock the test holds while reservations queue at the gate
# Every reservation's INSERT waits at this gate while the test holds the lock: the reservations
# of all the calls are then in flight together, past their checks, before any of them commits.
# Without the ledger's row locks every one of them passes its check (the budget is overshot by
# all but one); with them, one waits at the gate and the others wait for its row locks.
GATE_DDL = (
    f"""CREATE OR REPLACE FUNCTION test_reservation_gate() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN PERFORM pg_advisory_lock_shared({GATE_KEY});
    PERFORM pg_advisory_unlock_shared({GATE_KEY}); RETURN NEW; END $$""",
    "CREATE TRIGGER test_reservation_gate BEFORE INSERT ON budget_reservations "
    "FOR EACH ROW EXECUTE FUNCTION test_reservation_gate()",
)
GATE_DROP = (
    "DROP TRIGGER IF EXISTS test_reservation_gate ON budget_reservations",
    "DROP FUNCTION IF EXISTS test_reservation_gate()",
)
WAITING_ON_BUDGETS = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND wait_event_type = 'Lock' AND query LIKE '%budget_%' AND pid <> pg_backend_pid()"
)


async def test_two_worker_processes_spending_for_one_user_overshoot_by_at_most_one_reservation(
    stack: Stack, api: httpx.AsyncClient, fake: FakeLlm, tmp_path: Path
) -> None:
    # Prompts nearly free and answers as long as max_tokens allows: a call costs all but
    # exactly its reservation, so calls admitted together past the budget show as an
    # overshoot of several reservations.
    input_per_mtok, output_per_mtok, max_tokens = 1, 2000, 20
    prices = tmp_path / "prices.json"
    prices.write_text(
        json.dumps({MODEL: {"input_per_mtok": input_per_mtok, "output_per_mtok": output_per_mtok}})
    )
    limit = Decimal("0.10")  # two calls' reservations: eight tasks' first calls race for them
    await set_budget(api, "cat", {"budget": f"{limit}/day"})
    fake.script(*(reply(" ".join(["word"] * max_tokens)) for _ in range(80)))
    # Four tasks at once per process (its pool has four connections), one message held ahead:
    # each process takes at most five of the eight tasks, so both spend.
    per_process, tasks_count = 4, 8
    logs = [tmp_path / f"w{i}.log" for i in range(2)]
    gate = psycopg.connect(stack.database_url, autocommit=True)
    try:
        # The user's ledger rows exist already: creating them would queue the first callers.
        gate.execute(
            "INSERT INTO budget_ledger (user_id, period, period_start) VALUES "
            "('cat', 'day', date_trunc('day', now(), 'UTC')), "
            "('cat', 'month', date_trunc('month', now(), 'UTC')) ON CONFLICT DO NOTHING"
        )
        for statement in GATE_DDL:
            gate.execute(statement)
        gate.execute("SELECT pg_advisory_lock(%s)", (GATE_KEY,))
        workers = [worker_process(stack, fake, prices, log, per_process) for log in logs]
        try:
            await wait_until(lambda: all("concurrency" in log.read_text() for log in logs), 60)
            config = chain(10, max_tokens=max_tokens)
            tasks = [create(stack, "custom", config, Actor("cat")) for _ in range(tasks_count)]

            def started_count() -> int:
                return sum(
                    isinstance(e, Task.Started) for task_id in tasks for e in events(stack, task_id)
                )

            def all_started_are_queued() -> bool:
                count = started_count()  # read first: a task started later only adds a waiter
                waiting = gate.execute(WAITING_ON_BUDGETS).fetchone()
                return count >= per_process and waiting is not None and waiting[0] == count

            def activity() -> object:
                return gate.execute(
                    "SELECT wait_event_type, wait_event, left(query, 40) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND state = 'active'"
                ).fetchall()

            # The first reservations of every started task (at least four: all of one process)
            # are in flight together, held at the gate or behind its row locks.
            await wait_until(all_started_are_queued, 30, every=0.02, explain=activity)
            gate.execute("SELECT pg_advisory_unlock(%s)", (GATE_KEY,))
            done = [await finished(stack, task_id, within=60) for task_id in tasks]
        finally:
            for process in workers:
                process.terminate()
            for process in workers:
                process.wait(15)
    finally:
        for statement in GATE_DROP:
            gate.execute(statement)
        gate.close()
    calls = [c for task_id in tasks for c in model_calls(stack, task_id)]
    assert any(d.error_kind == "budget_exceeded" for d in done), [d.error_kind for d in done]
    started = {e.worker_id for t in tasks for e in events(stack, t) if isinstance(e, Task.Started)}
    assert len(started) == 2, started  # both processes spent
    spent = sum(Decimal(c.cost_usd or "x") for c in calls)
    prompt_chars = max(len(m["content"]) for r in fake.requests for m in r.messages) * 2
    one_reservation = (
        Decimal(prompt_chars // 3 + 16) * input_per_mtok + max_tokens * output_per_mtok
    ) / 1_000_000
    assert spent <= limit + one_reservation, (spent, one_reservation, len(calls))
    assert ledger_spent(stack, "cat") == spent


async def test_a_failed_call_releases_its_reservation_and_a_dead_workers_lapses_with_its_lease(
    stack: Stack, api: httpx.AsyncClient, fake: FakeLlm, prices_file: Path
) -> None:
    await set_budget(api, "dan", {"budget": "1/day"})
    fake.script(status(400))  # refused by the model: not transient, the task fails at once
    async with running_worker(stack, llm=model(fake), settings=worker_settings(stack, prices_file)):
        task_id = create(stack, "custom", chain(1, max_tokens=20), Actor("dan"))
        done = await finished(stack, task_id)
    assert done.error_kind == "bad_request"
    assert stack.rows("SELECT count(*) FROM budget_reservations WHERE user_id = 'dan'") == [(0,)]
    assert ledger_spent(stack, "dan") == 0

    # A worker that dies mid-call leaves its reservation: it counts until its lease ends.
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(stack.database_url, open=False)
    await pool.open()
    try:
        ledger = SpendLedger(pool, lease_seconds=300)
        limit = Limit(Decimal(1), "day")
        held = await ledger.reserve("dan", limit, task_id, 1, Decimal("0.9"))
        assert isinstance(held, Hold)
        refused = await ledger.reserve("dan", limit, task_id, 1, Decimal("0.2"))
        assert isinstance(refused, Refused)
        assert refused.standing.reserved == Decimal("0.9")
        # Its lease runs out (as 300 s later): it no longer counts, and the next one clears it.
        stack.rows(
            f"UPDATE budget_reservations SET expires_at = now() - interval '1 second' "
            f"WHERE id = '{held.id}' RETURNING id"
        )
        taken = await ledger.reserve("dan", limit, task_id, 1, Decimal("0.2"))
        assert isinstance(taken, Hold)
        assert stack.rows(f"SELECT count(*) FROM budget_reservations WHERE id = '{held.id}'") == [
            (0,)
        ]
        await ledger.release(taken)
    finally:
        await pool.close()


async def test_concurrent_reservations_take_exactly_what_the_budget_holds(stack: Stack) -> None:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        stack.database_url, min_size=16, max_size=16, open=False
    )
    await pool.open()
    try:
        ledger = SpendLedger(pool)
        limit = Limit(Decimal("0.5"), "day")
        task_id = uuid4()
        # The user's ledger rows exist already (their creation would queue the first callers).
        first = await ledger.reserve("eli", limit, task_id, 1, Decimal("0.1"))
        assert isinstance(first, Hold)
        await ledger.release(first)
        # Sixteen workers' calls at once, on sixteen connections: five fit.
        taken = await asyncio.gather(
            *(ledger.reserve("eli", limit, task_id, 1, Decimal("0.1")) for _ in range(16))
        )
        holds = [t for t in taken if isinstance(t, Hold)]
        assert len(holds) == 5
        for hold in holds:
            await ledger.settle(hold, Decimal("0.1"), None)
        assert ledger_spent(stack, "eli") == Decimal("0.5")
    finally:
        await pool.close()


async def test_a_soft_limit_alert_is_published_once_and_sent_to_the_webhooks_that_asked(
    stack: Stack, module_nats: EmbeddedNats
) -> None:
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    received: list[dict[str, Any]] = []

    async def receive(request: Request) -> Response:
        received.append(Webhook(secret).verify(request.body, request.headers))
        return Response(200, body=b"ok")

    settings = Settings(
        database_url=stack.database_url,
        jwt_secret=SECRET,
        fetch_allowed_hosts=frozenset({"127.0.0.1"}),  # the receiver is on loopback
    )
    async with LoopbackServer(receive) as receiver:
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(stack.database_url, open=False)
        await pool.open()
        try:
            async with pool.connection() as connection:
                await webhook_tables.ensure_tables(connection)
            for owner, events in (("fay", ["budget.soft_limit_reached"]), ("gus", ["task.failed"])):
                await webhook_tables.register(
                    pool,
                    owner=owner,
                    url=f"{receiver.base_url}/{owner}",
                    events=events,
                    secret=secret,
                    max_per_user=10,
                )
        finally:
            await pool.close()
        stop = asyncio.Event()
        bus = await connect(module_nats.url_for("worker"), "test-deliverer")
        try:
            async with bootstrap.deliverer(settings, stack.store, bus) as deliverer:
                running = asyncio.create_task(deliverer.run(stop))
                record = alert_recorder(stack.store)
                for user in ("fay", "fay", "gus"):  # fay's twice: stored (and sent) once
                    await asyncio.to_thread(
                        record,
                        user_id=user,
                        limit=Limit(Decimal(5), "day"),
                        started=datetime(2026, 12, 1, tzinfo=UTC),
                        soft_limit_usd=Decimal(4),
                        spent_usd=Decimal("4.01"),
                        task_id=uuid4(),
                    )
                await wait_until(lambda: len(receiver.requests) >= 1, 30)
                await settled_webhooks(stack)
                stop.set()
                await running
        finally:
            await bus.close()
    assert [r.path for r in receiver.requests] == ["/fay"]  # gus asked for task endings only
    (body,) = received
    assert body["type"] == "budget.soft_limit_reached"
    assert body["data"]["user"] == "fay"
    assert body["data"]["data"]["spent_usd"] == "4.01"
    assert body["data"]["data"]["period_start"] == "2026-12-01T00:00:00+00:00"


async def settled_webhooks(stack: Stack) -> None:
    """Every stored event published and taken by the deliverer, and no delivery pending."""
    # nats-py directly: the server's own counts of the deliverer's consumer.
    nc = await nats.connect(stack.nats.url_for("worker"))
    try:
        js = nc.jetstream()

        async def idle() -> bool:
            newest = stack.store.recorder.max_notification_id() or 0
            info = await js.consumer_info(STREAM, "webhooks-intake")
            pending = stack.rows("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")
            return (
                stack.relay.published_position >= newest
                and not info.num_pending
                and not info.num_ack_pending
                and pending == [(0,)]
            )

        await wait_until(idle, 30)
    finally:
        await nc.close()
