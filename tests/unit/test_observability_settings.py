"""AGENTTASKS_LOG_FORMAT and the OpenTelemetry variables: checked values, clear errors."""

from __future__ import annotations

import pytest

from agenttasks.settings import Settings, SettingsError


def test_the_defaults_choose_by_terminal_and_export_nothing() -> None:
    settings = Settings.from_env({})
    assert settings.log_format is None
    assert settings.otel_endpoint is None


def test_the_log_format_and_endpoint_are_read() -> None:
    settings = Settings.from_env(
        {"AGENTTASKS_LOG_FORMAT": "JSON", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}
    )
    assert settings.log_format == "json"
    assert settings.otel_endpoint == "http://collector:4318"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AGENTTASKS_LOG_FORMAT", "xml"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://" + "a" * 3000),
    ],
)
def test_a_bad_value_is_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_the_service_name_is_capped() -> None:
    assert len(Settings.from_env({"OTEL_SERVICE_NAME": "s" * 1000}).otel_service_name) == 200
