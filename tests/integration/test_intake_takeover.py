"""The deliverer's intake when its leader's lock session is ended under it (a Postgres backend
terminated, as on a failover): the standby takes the lock while the old leader still fetches
from the one consumer; acknowledged once per batch (AckPolicy.ALL), no ending may be lost and
none put in the outbox twice, and the old leader must stop taking."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import psycopg
import pytest

from agenttasks.servers.nats import EmbeddedNats
from agenttasks.webhooks.intake import LOCK_KEY
from tests.integration import test_deliver_intake as intake_tests
from tests.integration.stack import Stack, running_stack
from tests.integration.test_deliver_intake import (
    HOOK,
    Running,
    consumer_info,
    idle,
    leading,
    published,
    queued,
)
from tests.integration.test_webhooks import deliverer_settings, finish, register
from tests.waiting import wait_until


def end_the_lock_session(stack: Stack) -> int:
    """Terminates the backend holding the intake lock; returns how many were ended."""
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks"
            " WHERE locktype = 'advisory' AND granted"
            " AND classid = %s AND objid = %s AND objsubid = 1",
            (LOCK_KEY >> 32, LOCK_KEY & 0xFFFFFFFF),
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_a_leader_whose_lock_session_ends_hands_over_losing_and_repeating_nothing(
    database_url: str, nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hook never answers: with the shared test settings' quick retries the endpoint is
    # disabled after ~0.4 s of failures, and later endings are rightly not queued. Retry late.
    monkeypatch.setattr(
        intake_tests,
        "deliverer_settings",
        lambda url: replace(deliverer_settings(url), webhook_retry_seconds=(3600.0,)),
    )
    async with running_stack(database_url, nats_server) as stack:
        await register(database_url, HOOK, ["task.completed"])
        first, second = Running(stack, nats_server, "test-a"), Running(stack, nats_server, "test-b")
        a = await first.start()
        try:
            await wait_until(lambda: leading(a), 10)
            b = await second.start()
            try:
                await wait_until(lambda: b.intake is not None)
                before = await asyncio.to_thread(finish, stack, "completed")
                await wait_until(lambda: f"agenttasks:{before}" in queued(stack), 10)
                assert not leading(b)

                assert await asyncio.to_thread(end_the_lock_session, stack) == 1
                # Endings while the old leader has not noticed yet, and after.
                during = [await asyncio.to_thread(finish, stack, "completed") for _ in range(3)]
                await wait_until(lambda: leading(b), 10)
                await wait_until(lambda: not leading(a), 10)
                after = [await asyncio.to_thread(finish, stack, "completed") for _ in range(3)]
                await published(stack, after[-1])

                expected = sorted(f"agenttasks:{p}" for p in (before, *during, *after))
                pending: list[object] = []  # the consumer's state, for the explanation

                async def consumer_state() -> bool:
                    info = await consumer_info(nats_server)
                    pending.append((info.num_pending, info.num_ack_pending, info.delivered))
                    return sorted(queued(stack)) == expected

                await wait_until(
                    consumer_state,
                    15,
                    every=0.2,
                    explain=lambda: (sorted(set(expected) - set(queued(stack))), pending[-1:]),
                )
                await wait_until(lambda: idle(nats_server), 10)
                assert sorted(queued(stack)) == expected, "each ending once"
                assert not leading(a), "one deliverer takes intake at a time"
            finally:
                await second.stop()
        finally:
            await first.stop()
