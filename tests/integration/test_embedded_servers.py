"""The embedded servers `agenttasks up` and the tests run on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nats
import psycopg
import pytest
from nats.js.api import StreamConfig

from agenttasks.servers.nats import PACKAGED_CONFIG, EmbeddedNats, validate_config
from agenttasks.servers.postgres import start_postgres
from agenttasks.servers.secrets import load_or_create_secrets


def test_postgres_keeps_its_data_across_a_restart(tmp_path: Path) -> None:
    server = start_postgres(tmp_path / "pg")
    try:
        with psycopg.connect(server.url, autocommit=True) as connection:
            connection.execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")
        server.stop()
        restarted = start_postgres(tmp_path / "pg")
        assert restarted.pid != server.pid
        with psycopg.connect(restarted.url) as connection:
            assert connection.execute("SELECT n FROM kept").fetchone() == (42,)
    finally:
        server.stop()
        restarted.stop()
    assert not (tmp_path / "pg" / "postmaster.pid").exists()


def test_a_server_left_running_on_the_directory_is_reused_not_duplicated(tmp_path: Path) -> None:
    first = start_postgres(tmp_path / "pg")
    try:
        again = start_postgres(tmp_path / "pg")  # e.g. after the first owner crashed
        assert again.pid == first.pid
    finally:
        first.stop()


async def test_nats_keeps_streams_across_a_restart(
    start_nats_server: Callable[..., EmbeddedNats], tmp_path: Path
) -> None:
    server = start_nats_server(tmp_path / "nats")
    nc = await nats.connect(server.url_for("relay"))
    await nc.jetstream().add_stream(
        StreamConfig(name="AGENTTASKS_EVENTS", subjects=["agenttasks.events.>"])
    )
    await nc.jetstream().publish("agenttasks.events.x", b"kept")
    await nc.close()
    server.stop()
    again = start_nats_server(tmp_path / "nats", server.port)
    nc = await nats.connect(again.url_for("relay"))
    info = await nc.jetstream().stream_info("AGENTTASKS_EVENTS")
    await nc.close()
    assert info.state.messages == 1


def test_the_shipped_nats_conf_is_valid_and_a_broken_one_is_refused(tmp_path: Path) -> None:
    assert validate_config(PACKAGED_CONFIG) is None
    broken = tmp_path / "broken.conf"
    broken.write_text("authorization { users = [ { user: x } \n")
    assert validate_config(broken) is not None


def test_secrets_are_generated_once_and_kept_private(tmp_path: Path) -> None:
    first = load_or_create_secrets(tmp_path)
    assert first == load_or_create_secrets(tmp_path)
    assert len(first.jwt_secret) >= 32
    assert (tmp_path / "secrets.json").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("role", ["relay", "projector", "worker", "api", "reader"])
def test_every_role_has_a_url_with_its_own_credentials(
    nats_server: EmbeddedNats, role: str
) -> None:
    assert nats_server.url_for(role).startswith(f"nats://{role}:")


def test_generated_nats_passwords_are_plain_strings_to_the_nats_config_parser(
    tmp_path: Path, start_nats_server: Callable[..., EmbeddedNats]
) -> None:
    (tmp_path / "secrets.json").write_text(
        '{"jwt_secret": "' + "k" * 64 + '", "nats_passwords": {"relay": "0e12", "reader": "true"}}'
    )
    passwords = load_or_create_secrets(tmp_path).nats_passwords
    assert passwords["relay"] != "0e12"
    assert passwords["reader"] != "true"
    assert validate_config(PACKAGED_CONFIG, passwords) is None
