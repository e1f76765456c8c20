"""Checks of a template's configuration: its JSON Schema, its defaults, and merged task configs.

A template's `config_schema` must be a valid JSON Schema (draft 2020-12) and its
`default_config` must satisfy it. The defaults must also respect the task type's own rules
(task_configs.py), except that fields the type requires may be left to each task: a research
template can leave `topic` open. A task made from a template gets the defaults deep-merged with
its overrides, and that merged config must pass both the schema and the type's rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgspec
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError

from agenttasks.application.task_configs import (
    MAX_CONFIG_BYTES,
    ConfigError,
    contains_nul,
    parse_config,
)

MAX_SCHEMA_BYTES = 64 * 1024
MAX_ERRORS = 20
_MISSING_TOP_LEVEL = re.compile(r"^Object missing required field `[^`]+`$")


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` laid over it: objects merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def check_definition(task_type: str, default_config: Any, config_schema: Any) -> None:
    """Raises ConfigError naming each field at fault unless the template's config is sound."""
    validator = schema_validator(config_schema)
    if not isinstance(default_config, dict):
        raise ConfigError(["default_config must be a JSON object"])
    _check_size("default_config", default_config, MAX_CONFIG_BYTES)
    errors = schema_errors(validator, default_config, "default_config")
    errors += _type_errors_of_defaults(task_type, default_config)
    if errors:
        raise ConfigError(errors)


def schema_validator(config_schema: Any) -> Draft202012Validator:
    """A validator for `config_schema`; ConfigError when it is not a valid JSON Schema."""
    if not isinstance(config_schema, dict):
        raise ConfigError(["config_schema must be a JSON object (a JSON Schema)"])
    _check_size("config_schema", config_schema, MAX_SCHEMA_BYTES)
    try:
        Draft202012Validator.check_schema(config_schema)
    except SchemaError as error:
        where = _path("config_schema", error.absolute_path)
        message = f"config_schema is not a valid JSON Schema (draft 2020-12): `{where}`"
        raise ConfigError([f"{message}: {error.message}"]) from None
    return Draft202012Validator(config_schema)


def schema_errors(validator: Draft202012Validator, config: Any, name: str) -> list[str]:
    """Every way `config` breaks the schema, each naming the field (`name.a.b[0]`)."""
    try:
        found: Iterable[ValidationError] = sorted(
            validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path]
        )
        return [
            f"`{_path(name, error.absolute_path)}`: {error.message}"
            for error in list(found)[:MAX_ERRORS]
        ]
    except Exception as error:  # e.g. a $ref nothing can resolve: the schema's fault, not a crash
        return [f"config_schema cannot be applied: {type(error).__name__}: {error}"]


def merged_config(
    task_type: str,
    default_config: dict[str, Any],
    config_schema: dict[str, Any],
    overrides: Any,
) -> dict[str, Any]:
    """The defaults merged with `overrides`, checked against the schema and the type's rules."""
    if not isinstance(overrides, dict):
        raise ConfigError(["task_config must be a JSON object"])
    merged = deep_merge(default_config, overrides)
    errors = schema_errors(schema_validator(config_schema), merged, "task_config")
    try:
        parse_config(task_type, merged)
    except ConfigError as error:
        errors += error.errors
    if errors:
        raise ConfigError(errors)
    return merged


def _type_errors_of_defaults(task_type: str, default_config: dict[str, Any]) -> list[str]:
    try:
        parse_config(task_type, default_config)
    except ConfigError as error:
        if len(error.errors) == 1 and _left_to_each_task(
            task_type, default_config, error.errors[0]
        ):
            return []
        return [message.replace("task_config", "default_config") for message in error.errors]
    return []


def _left_to_each_task(task_type: str, default_config: dict[str, Any], message: str) -> bool:
    # msgspec reports a missing top-level field only once every given field has checked out,
    # so such an error means the defaults are sound but incomplete: each task completes them.
    if _MISSING_TOP_LEVEL.match(message):
        return True
    # A summary needs content or urls; a template may leave both to each task: sound defaults
    # pass once given some content.
    if task_type != "summary" or default_config.get("content") or default_config.get("urls"):
        return False
    try:
        parse_config(task_type, {**default_config, "content": "each task's own"})
    except ConfigError:
        return False
    return True


def _check_size(name: str, value: dict[str, Any], limit: int) -> None:
    size = len(msgspec.json.encode(value))
    if size > limit:
        raise ConfigError([f"{name} is {size} bytes; the limit is {limit}"])
    if contains_nul(value):
        raise ConfigError([f"{name} must not contain NUL characters (\\u0000)"])


def _path(name: str, path: Iterable[Any]) -> str:
    text = name
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text
