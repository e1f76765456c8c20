"""A pending task must expire before its message can leave the stream: a TTL that is off, or as
long as AGENTTASKS_STREAM_MAX_AGE, would leave tasks pending for ever with nothing to start them
(the stream's max_age came with retention; the TTL's `off` came before it)."""

from __future__ import annotations

import pytest

from agenttasks.settings import Settings, SettingsError


@pytest.mark.parametrize(
    ("ttl", "age", "shown"),
    [
        ("off", "", "AGENTTASKS_PENDING_TTL (off)"),  # the stream's default 7d
        ("7d", "", "(1w) must be shorter than AGENTTASKS_STREAM_MAX_AGE (1w)"),
        ("30d", "14d", "(30d) must be shorter than AGENTTASKS_STREAM_MAX_AGE (2w)"),
    ],
)
def test_a_pending_task_cannot_outlive_its_message(ttl: str, age: str, shown: str) -> None:
    env = {"AGENTTASKS_PENDING_TTL": ttl, "AGENTTASKS_STREAM_MAX_AGE": age}
    with pytest.raises(SettingsError, match="AGENTTASKS_PENDING_TTL") as raised:
        Settings.from_env(env)
    assert shown in str(raised.value)
    assert "AGENTTASKS_STREAM_MAX_AGE=off" in str(raised.value)


def test_a_ttl_shorter_than_the_stream_or_a_stream_kept_for_ever_is_accepted() -> None:
    assert Settings.from_env({}).pending_ttl is not None  # 24h < 7d: the defaults agree
    Settings.from_env({"AGENTTASKS_PENDING_TTL": "6d"})
    kept = {"AGENTTASKS_PENDING_TTL": "off", "AGENTTASKS_STREAM_MAX_AGE": "off"}
    assert Settings.from_env(kept).pending_ttl is None
    Settings.from_env({"AGENTTASKS_PENDING_TTL": "30d", "AGENTTASKS_STREAM_MAX_AGE": "off"})
