"""The maintenance role's settings are bounded: a TTL, an interval, a sweep's batch or a
liveness threshold out of bounds stops the process at start with a message naming it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from agenttasks.settings import Settings, SettingsError


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AGENTTASKS_PENDING_TTL", "0s"),
        ("AGENTTASKS_PENDING_TTL", "soon"),
        ("AGENTTASKS_PENDING_TTL", "99999999d"),
        ("AGENTTASKS_MAINTENANCE_EXPIRY_SECONDS", "0"),
        ("AGENTTASKS_MAINTENANCE_WATCHDOG_SECONDS", "3601"),
        ("AGENTTASKS_MAINTENANCE_PURGE_SECONDS", "0"),
        ("AGENTTASKS_MAINTENANCE_LIVENESS_SECONDS", "-1"),
        ("AGENTTASKS_MAINTENANCE_BATCH", "0"),
        ("AGENTTASKS_MAINTENANCE_BATCH", "100001"),
        ("AGENTTASKS_WORKER_LOST_SECONDS", "2"),
        ("AGENTTASKS_WORKER_FORGET_SECONDS", "59"),
    ],
)
def test_an_out_of_bounds_maintenance_setting_is_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_a_worker_is_not_lost_between_two_of_its_beats() -> None:
    with pytest.raises(SettingsError, match="AGENTTASKS_WORKER_LOST_SECONDS"):
        Settings.from_env(
            {"AGENTTASKS_WORKER_LOST_SECONDS": "9", "AGENTTASKS_WORKER_HEARTBEAT_SECONDS": "5"}
        )


def test_the_defaults_expire_after_a_day_and_off_never_expires() -> None:
    assert Settings.from_env({}).pending_ttl == timedelta(hours=24)
    off = {"AGENTTASKS_PENDING_TTL": "off", "AGENTTASKS_STREAM_MAX_AGE": "off"}
    assert Settings.from_env(off).pending_ttl is None
    assert Settings.from_env({"AGENTTASKS_PENDING_TTL": "90m"}).pending_ttl == timedelta(hours=1.5)
    assert Settings.from_env({}).maintenance_batch == 1000
