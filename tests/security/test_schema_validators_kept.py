"""Checked schemas' validators are kept (AGENTTASKS_SCHEMA_VALIDATORS_KEPT): bounded, never a way
past a check. A refused schema is refused every time; a kept validator judges exactly as a fresh
one; values JSON equality would confuse (1, 1.0, true) are told apart; the count stays capped.
"""

from __future__ import annotations

import dataclasses

import pytest

from agenttasks.application.schema_document import SchemaLimits
from agenttasks.application.task_configs import ConfigError
from agenttasks.application.template_configs import (
    kept_validators,
    merged_config,
    schema_errors,
    schema_validator,
)
from agenttasks.settings import Settings, SettingsError

LIMITS = SchemaLimits(validators_kept=3)


def schema(n: int) -> dict[str, object]:
    return {"type": "object", "properties": {"length": {"type": "integer", "maximum": n}}}


def test_no_more_validators_are_kept_than_the_cap() -> None:
    for n in range(50):
        schema_validator(schema(n), LIMITS)
    assert kept_validators() <= 3
    schema_validator(schema(1000), dataclasses.replace(LIMITS, validators_kept=1))
    assert kept_validators() == 1


def test_none_is_kept_at_zero() -> None:
    off = dataclasses.replace(LIMITS, validators_kept=0)
    schema_validator(schema(7), dataclasses.replace(LIMITS, validators_kept=1))
    first = schema_validator(schema(8), off)
    assert schema_validator(schema(8), off) is not first


def test_a_kept_validator_is_reused_for_the_same_schema_and_caps() -> None:
    first = schema_validator(schema(800), LIMITS)
    assert schema_validator(schema(800), LIMITS) is first
    assert schema_validator(schema(800), dataclasses.replace(LIMITS, max_depth=8)) is not first


def test_a_kept_validator_refuses_what_a_fresh_one_refuses() -> None:
    schema_validator(schema(800), LIMITS)  # kept
    with pytest.raises(ConfigError) as kept:
        merged_config("content_generation", {"topic": "x"}, schema(800), {"length": 900}, LIMITS)
    off = dataclasses.replace(LIMITS, validators_kept=0)
    with pytest.raises(ConfigError) as fresh:
        merged_config("content_generation", {"topic": "x"}, schema(800), {"length": 900}, off)
    assert kept.value.errors == fresh.value.errors
    assert "length" in kept.value.errors[0]


def test_a_refused_schema_is_refused_every_time() -> None:
    bad = {"type": "object", "required": "topic"}
    for _ in range(3):
        with pytest.raises(ConfigError, match=r"config_schema\.required"):
            schema_validator(bad, LIMITS)


def test_values_json_equality_confuses_get_validators_of_their_own() -> None:
    as_int = {"const": 1}
    as_bool = {"const": True}
    as_float = {"const": 1.0}
    validators = [schema_validator(s, LIMITS) for s in (as_int, as_bool, as_float)]
    assert len({id(v) for v in validators}) == 3
    # jsonschema itself tells true from 1: the kept validator for {"const": 1} refuses true.
    assert schema_errors(validators[0], True, "task_config", LIMITS)
    assert not schema_errors(validators[0], 1, "task_config", LIMITS)


def test_changing_the_schema_dict_afterwards_does_not_change_the_kept_validator() -> None:
    mine = schema(10)
    validator = schema_validator(mine, LIMITS)
    mine["properties"] = {"length": {"type": "integer", "maximum": 10_000}}
    assert schema_errors(validator, {"length": 500}, "task_config", LIMITS)


@pytest.mark.parametrize("value", ["-1", "10001", "many"])
def test_the_setting_is_bounded(value: str) -> None:
    with pytest.raises(SettingsError, match="AGENTTASKS_SCHEMA_VALIDATORS_KEPT"):
        Settings.from_env({"AGENTTASKS_SCHEMA_VALIDATORS_KEPT": value})


def test_the_setting_reaches_the_schema_limits() -> None:
    settings = Settings.from_env({"AGENTTASKS_SCHEMA_VALIDATORS_KEPT": "5"})
    assert settings.caps(SchemaLimits, "schema_").validators_kept == 5
