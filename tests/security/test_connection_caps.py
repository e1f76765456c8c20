"""Postgres connections: each process opens at most AGENTTASKS_DATABASE_POOL_SIZE to the event
store and keeps one when idle; the embedded server admits what `up` and its clients need.

Before, every process held the pool size open from its start and could open as many again
(six roles at 8 held 66 connections idle; a benchmark's 32 clients then met "too many clients"
at the embedded server's initdb default of 100).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from agenttasks.application.store import close, open_event_store
from agenttasks.servers.postgres import MAX_CONNECTIONS, EmbeddedPostgres, configure_connections
from agenttasks.settings import Settings


def _backends(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_an_idle_event_store_keeps_one_connection_and_opens_at_most_the_pool_size(
    database_url: str,
) -> None:
    store = open_event_store(
        Settings(database_url=database_url, database_pool_size=3).eventsourcing_env()
    )
    try:
        pool = store.recorder.datastore.pool  # type: ignore[attr-defined]
        pool.wait(timeout=10)  # every connection the pool keeps open is open now
        # One is kept; opening the store (its DDL) briefly used a second, which the pool closes
        # after ten idle minutes. Before: all three opened at once and kept.
        assert pool.min_size == 1
        assert pool.get_stats()["pool_size"] <= 2
        with contextlib.ExitStack() as held:
            for _ in range(3):
                held.enter_context(pool.connection())
            assert _backends(database_url) == 3
            with pytest.raises(PoolTimeout):  # a fourth would exceed the setting
                pool.getconn(timeout=0.2)
    finally:
        close(store)


def test_the_embedded_server_admits_max_connections(postgres: EmbeddedPostgres) -> None:
    with psycopg.connect(postgres.url, autocommit=True) as connection:
        row = connection.execute("SHOW max_connections").fetchone()
    assert row is not None
    assert int(row[0]) == MAX_CONNECTIONS > 100


def test_the_setting_replaces_its_own_line_and_keeps_the_rest(tmp_path: Path) -> None:
    conf = tmp_path / "postgresql.conf"
    conf.write_text("max_connections = 100\t\t# (change requires restart)\nport = 5432\n")
    configure_connections(tmp_path, 150)
    configure_connections(tmp_path, 180)
    lines = conf.read_text().splitlines()
    assert lines[:2] == ["max_connections = 100\t\t# (change requires restart)", "port = 5432"]
    assert len(lines) == 3
    assert lines[2].startswith("max_connections = 180 ")
