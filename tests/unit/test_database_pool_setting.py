"""AGENTTASKS_DATABASE_POOL_SIZE: how many connections each process keeps to the event store."""

from __future__ import annotations

import pytest

from agenttasks.settings import Settings, SettingsError

URL = "postgresql://agenttasks@db/agenttasks"


def test_the_pool_size_reaches_the_event_store_and_bounds_its_overflow() -> None:
    settings = Settings.from_env(
        {"AGENTTASKS_DATABASE_URL": URL, "AGENTTASKS_DATABASE_POOL_SIZE": "3"}
    )
    env = settings.eventsourcing_env()
    assert (env["POSTGRES_POOL_SIZE"], env["POSTGRES_MAX_OVERFLOW"]) == ("3", "3")


def test_the_default_pool_size_is_eight() -> None:
    env = Settings.from_env({"AGENTTASKS_DATABASE_URL": URL}).eventsourcing_env()
    assert env["POSTGRES_POOL_SIZE"] == "8"


@pytest.mark.parametrize("value", ["0", "65", "many"])
def test_a_pool_size_out_of_bounds_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="AGENTTASKS_DATABASE_POOL_SIZE"):
        Settings.from_env({"AGENTTASKS_DATABASE_POOL_SIZE": value})
