"""Settings come from the environment once; a bad value is refused with the variable's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from agenttasks.settings import Settings, SettingsError


def test_defaults_run_the_embedded_stack() -> None:
    settings = Settings.from_env({})
    assert (settings.database_url, settings.nats_url, settings.port) == (None, None, 8000)
    assert settings.home == Path(".agenttasks")


def test_a_database_url_becomes_the_event_stores_settings() -> None:
    settings = Settings.from_env(
        {"AGENTTASKS_DATABASE_URL": "postgresql://app:pw@db.example:6543/tasks"}
    )
    env = settings.eventsourcing_env()
    assert env["PERSISTENCE_MODULE"] == "eventsourcing.postgres"
    assert (env["POSTGRES_HOST"], env["POSTGRES_PORT"], env["POSTGRES_DBNAME"]) == (
        "db.example",
        "6543",
        "tasks",
    )
    assert (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"]) == ("app", "pw")
    assert "POSTGRES_ENABLE_DB_FUNCTIONS" not in env, "the ordered append must stay"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("AGENTTASKS_PORT", "eighty", "AGENTTASKS_PORT must be a whole number"),
        ("AGENTTASKS_PORT", "70000", "AGENTTASKS_PORT must be between 1 and 65535"),
        ("AGENTTASKS_JWT_SECRET", "short", "at least 32 bytes"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({variable: value})


def test_each_role_may_have_its_own_nats_url() -> None:
    settings = Settings(nats_url="nats://shared:4222", nats_role_urls={"relay": "nats://r:x@h:1"})
    assert settings.nats_url_for("relay") == "nats://r:x@h:1"
    assert settings.nats_url_for("api") == "nats://shared:4222"
    with pytest.raises(SettingsError, match="no NATS server"):
        Settings().nats_url_for("api")
