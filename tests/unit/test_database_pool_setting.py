"""AGENTTASKS_DATABASE_POOL_SIZE: the most event-store connections one process opens."""

from __future__ import annotations

import pytest

from agenttasks.settings import Settings, SettingsError

URL = "postgresql://agenttasks@db/agenttasks"


def test_the_pool_size_bounds_the_event_store_pool_which_keeps_one_open() -> None:
    settings = Settings.from_env(
        {"AGENTTASKS_DATABASE_URL": URL, "AGENTTASKS_DATABASE_POOL_SIZE": "3"}
    )
    env = settings.eventsourcing_env()
    # The library's pool: POOL_SIZE kept open, up to POOL_SIZE + MAX_OVERFLOW in all.
    assert (env["POSTGRES_POOL_SIZE"], env["POSTGRES_MAX_OVERFLOW"]) == ("1", "2")


def test_the_default_pool_size_is_eight_in_all() -> None:
    env = Settings.from_env({"AGENTTASKS_DATABASE_URL": URL}).eventsourcing_env()
    assert int(env["POSTGRES_POOL_SIZE"]) + int(env["POSTGRES_MAX_OVERFLOW"]) == 8


@pytest.mark.parametrize("value", ["0", "65", "many"])
def test_a_pool_size_out_of_bounds_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="AGENTTASKS_DATABASE_POOL_SIZE"):
        Settings.from_env({"AGENTTASKS_DATABASE_POOL_SIZE": value})
