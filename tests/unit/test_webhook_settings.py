"""The AGENTTASKS_WEBHOOK_* settings: defaults, bounds, and the retry schedule's form."""

from __future__ import annotations

import pytest

from agenttasks.bootstrap import webhook_limits
from agenttasks.settings import Settings, SettingsError


def test_defaults_retry_for_about_a_day() -> None:
    settings = Settings.from_env({})
    assert 24 * 3600 <= sum(settings.webhook_retry_seconds) <= 30 * 3600
    assert webhook_limits(settings).max_endpoints_per_user == 10
    assert webhook_limits(settings).max_url_chars == 2048


def test_values_are_read_and_bounded() -> None:
    settings = Settings.from_env(
        {
            "AGENTTASKS_WEBHOOK_MAX_ENDPOINTS_PER_USER": "3",
            "AGENTTASKS_WEBHOOK_CONCURRENCY_PER_ENDPOINT": "1",
            "AGENTTASKS_WEBHOOK_RETRY_SECONDS": "1, 2.5,60",
        }
    )
    assert settings.webhook_max_endpoints_per_user == 3
    assert settings.webhook_concurrency_per_endpoint == 1
    assert settings.webhook_retry_seconds == (1.0, 2.5, 60.0)
    with pytest.raises(SettingsError, match="AGENTTASKS_WEBHOOK_TIMEOUT must be between 1 and 120"):
        Settings.from_env({"AGENTTASKS_WEBHOOK_TIMEOUT": "0"})
    with pytest.raises(SettingsError, match="AGENTTASKS_WEBHOOK_MAX_URL_CHARS"):
        Settings.from_env({"AGENTTASKS_WEBHOOK_MAX_URL_CHARS": "100000"})
    with pytest.raises(SettingsError, match="1 to 20 delays"):
        Settings.from_env({"AGENTTASKS_WEBHOOK_RETRY_SECONDS": "5,100000"})
    with pytest.raises(SettingsError, match="separated by commas"):
        Settings.from_env({"AGENTTASKS_WEBHOOK_RETRY_SECONDS": "5;6"})
