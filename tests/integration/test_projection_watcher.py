"""The API's projection watcher (projections/positions.py) on a real Postgres.

It reads the projectors' announcements straight off its LISTEN socket: waiters wake on both
payload forms, a killed connection is replaced (and what was announced meanwhile is read from
the tracking table), and the socket keeps one reader for the connection's life.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import psycopg

from agenttasks.projections.base import NOTIFY_CHANNEL, TRACKING_DDL, announcement
from agenttasks.projections.positions import ProjectionWatcher
from tests.waiting import wait_until


def notify(url: str, payload: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, payload))


def terminate_others(url: str) -> int:
    """Ends every other session on this test's database (the watcher's); how many."""
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


async def test_announcements_wake_the_waiters_they_satisfy(database_url: str) -> None:
    watcher = ProjectionWatcher(database_url)
    await watcher.start()
    try:
        tasks = asyncio.ensure_future(watcher.wait("tasks", 5, timeout=10))
        statistics = asyncio.ensure_future(watcher.wait("statistics", 7, timeout=10))
        await asyncio.to_thread(notify, database_url, announcement({"tasks": 5, "statistics": 5}))
        assert await tasks
        assert not statistics.done()  # at 5, short of 7
        await asyncio.to_thread(notify, database_url, "statistics:7")  # a replay switch's form
        assert await statistics
        assert await watcher.position("tasks") == 5
        assert not await watcher.wait("tasks", 6, timeout=0.1)
    finally:
        await watcher.stop()


async def test_a_killed_connection_is_replaced_and_nothing_is_missed(database_url: str) -> None:
    watcher = ProjectionWatcher(database_url)
    await watcher.start()
    try:
        await asyncio.to_thread(notify, database_url, "tasks:3")
        assert await watcher.wait("tasks", 3, timeout=10)
        # Recorded without an announcement: the watcher learns it only from the tracking table,
        # which it reads when its connection is back.
        with psycopg.connect(database_url, autocommit=True) as connection:
            for statement in TRACKING_DDL:
                connection.execute(statement)
            connection.execute(
                "INSERT INTO projection_tracking (name, position, sequence) VALUES ('tasks', 9, 0)"
            )
        assert not await watcher.wait("tasks", 9, timeout=0.1)
        assert await asyncio.to_thread(terminate_others, database_url) == 1
        assert await watcher.wait("tasks", 9, timeout=20)
        positions = itertools.count(10)

        async def announced_and_seen() -> bool:
            position = next(positions)
            await asyncio.to_thread(notify, database_url, f"tasks:{position}")
            return await watcher.wait("tasks", position, timeout=0.5)

        await wait_until(announced_and_seen, every=0.01)
    finally:
        await watcher.stop()


async def test_one_reader_for_the_connections_life(database_url: str) -> None:
    # psycopg's notifies() added and removed a socket reader for every NOTIFY.
    loop = asyncio.get_running_loop()
    added: list[Any] = []
    add_reader = loop.add_reader

    def counting(fd: Any, callback: Any, *args: Any) -> None:
        added.append(fd)
        add_reader(fd, callback, *args)

    watcher = ProjectionWatcher(database_url)
    await watcher.start()
    loop.add_reader = counting  # type: ignore[method-assign]
    try:
        with psycopg.connect(database_url, autocommit=True) as sender:
            for position in range(1, 31):
                sender.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, f"tasks:{position}"))
                assert await watcher.wait("tasks", position, timeout=10)
        assert len(added) <= 1, f"{len(added)} readers added for 30 announcements"
    finally:
        del loop.add_reader
        await watcher.stop()


async def test_timed_out_and_cancelled_waits_leave_the_others_waiting(database_url: str) -> None:
    watcher = ProjectionWatcher(database_url)
    await watcher.start()
    try:
        cancelled = asyncio.ensure_future(watcher.wait("tasks", 4, timeout=10))
        waiting = asyncio.ensure_future(watcher.wait("tasks", 4, timeout=10))
        assert not await watcher.wait("tasks", 4, timeout=0.05)  # timed out: False
        cancelled.cancel()
        await asyncio.to_thread(notify, database_url, "tasks:4")
        assert await waiting
        assert cancelled.cancelled()
        assert await watcher.wait("tasks", 4, timeout=0)  # already there: no wait at all
    finally:
        await watcher.stop()
