"""Checks of a template's configuration: its JSON Schema, its defaults, and merged task configs.

A template's `config_schema` must be a valid JSON Schema (draft 2020-12) and its
`default_config` must satisfy it. The defaults must also respect the task type's own rules
(task_configs.py), except that fields the type requires may be left to each task: a research
template can leave `topic` open. A task made from a template gets the defaults deep-merged with
its overrides, and that merged config must pass both the schema and the type's rules.

Schemas are hostile input: schema_document.py checks the document (refs only inside itself,
RE2 patterns, size, depth), schema_keywords.py bounds the work of validating, and every
message comes from schema_messages.py, never from the library.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
from collections import OrderedDict
from typing import Any

import msgspec
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from agenttasks.application.schema_document import DocumentRefused, SchemaLimits, check_document
from agenttasks.application.schema_keywords import (
    Budget,
    ValidationTooComplex,
    bounded_validator,
    done_spending,
    spending,
)
from agenttasks.application.schema_messages import describe, path_text
from agenttasks.application.task_configs import (
    MAX_CONFIG_BYTES,
    ConfigError,
    contains_nul,
    parse_config,
)

log = logging.getLogger(__name__)

# Validators of accepted schemas, by the schema's text and the caps (SchemaLimits.validators_kept).
_kept: OrderedDict[tuple[str, SchemaLimits], Any] = OrderedDict()
_kept_lock = threading.Lock()

MAX_ERRORS = 20
DEFAULT_LIMITS = SchemaLimits()
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


def check_definition(
    task_type: str,
    default_config: Any,
    config_schema: Any,
    limits: SchemaLimits = DEFAULT_LIMITS,
) -> None:
    """Raises ConfigError naming each field at fault unless the template's config is sound."""
    validator = schema_validator(config_schema, limits)
    if not isinstance(default_config, dict):
        raise ConfigError(["default_config must be a JSON object"])
    _check_size("default_config", default_config, MAX_CONFIG_BYTES)
    errors = schema_errors(validator, default_config, "default_config", limits)
    errors += _type_errors_of_defaults(task_type, default_config)
    if errors:
        raise ConfigError(errors)


def schema_validator(config_schema: Any, limits: SchemaLimits = DEFAULT_LIMITS) -> Any:
    """A bounded validator for `config_schema`; ConfigError when the schema is refused."""
    if not isinstance(config_schema, dict):
        raise ConfigError(["config_schema must be a JSON object (a JSON Schema)"])
    _check_size("config_schema", config_schema, limits.max_bytes)
    # repr tells apart what JSON equality would not here (1, 1.0 and true; NaN and null).
    key = (repr(config_schema), limits)
    with _kept_lock:
        validator = _kept.get(key)
        if validator is not None:
            _kept.move_to_end(key)
            return validator
    # Built on a copy: a caller that changes its dict later cannot change the kept validator.
    validator = _checked_validator(copy.deepcopy(config_schema), limits)
    if limits.validators_kept > 0:  # only accepted schemas: a refused one is checked each time
        with _kept_lock:
            _kept[key] = validator
            while len(_kept) > limits.validators_kept:
                _kept.popitem(last=False)
    return validator


def kept_validators() -> int:
    """How many checked schemas' validators this process keeps now."""
    with _kept_lock:
        return len(_kept)


def _checked_validator(config_schema: dict[str, Any], limits: SchemaLimits) -> Any:
    try:
        check_document(config_schema, limits, "config_schema")
    except DocumentRefused as error:
        raise ConfigError([str(error)]) from None
    try:
        Draft202012Validator.check_schema(config_schema)
    except SchemaError as error:
        where = path_text("config_schema", error.absolute_path)
        message = f"config_schema is not a valid JSON Schema (draft 2020-12): `{where}`"
        raise ConfigError([f"{message}: {'; '.join(describe(error))}"]) from None
    except RecursionError:
        raise ConfigError(["config_schema nests too deeply to check"]) from None
    return bounded_validator(config_schema)


def schema_errors(
    validator: Any, config: Any, name: str, limits: SchemaLimits = DEFAULT_LIMITS
) -> list[str]:
    """Every way `config` breaks the schema, each naming the field (`name.a.b[0]`) and rule."""
    token = spending(Budget(limits.max_validation_steps, limits.max_validation_depth))
    try:
        found = list(validator.iter_errors(config))
    except ValidationTooComplex as error:
        return [_too_complex(name, error.args[0], limits)]
    except RecursionError:
        return [_too_complex(name, "depth", limits)]
    except Exception as error:  # e.g. a ref jsonschema cannot follow: the schema's fault
        log.info("config_schema cannot be applied: %s", type(error).__name__)
        return ["config_schema cannot be applied to this config"]
    finally:
        done_spending(token)
    found.sort(key=lambda e: [str(p) for p in e.absolute_path])
    messages: dict[str, None] = {}  # ordered, without repeats (`required` names each field)
    for failure in found:
        for text in describe(failure):
            messages[f"`{path_text(name, failure.absolute_path)}`: {text}"] = None
    return list(messages)[:MAX_ERRORS]


def _too_complex(name: str, reason: str, limits: SchemaLimits) -> str:
    why = {
        "steps": f"it takes more than {limits.max_validation_steps} steps",
        "depth": f"it nests more than {limits.max_validation_depth} levels deep",
    }.get(reason, "it uses a rule that cannot be checked here")
    return f"config_schema is too complex to validate `{name}`: {why}"


def merged_config(
    task_type: str,
    default_config: dict[str, Any],
    config_schema: dict[str, Any],
    overrides: Any,
    limits: SchemaLimits = DEFAULT_LIMITS,
) -> dict[str, Any]:
    """The defaults merged with `overrides`, checked against the schema and the type's rules."""
    if not isinstance(overrides, dict):
        raise ConfigError(["task_config must be a JSON object"])
    merged = deep_merge(default_config, overrides)
    _check_size("task_config", merged, MAX_CONFIG_BYTES)
    validator = schema_validator(config_schema, limits)
    errors = schema_errors(validator, merged, "task_config", limits)
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
    try:
        size = len(msgspec.json.encode(value))
    except RecursionError:  # nested thousands deep: no schema or config needs that
        raise ConfigError([f"{name} nests too deeply"]) from None
    if size > limit:
        raise ConfigError([f"{name} is {size} bytes; the limit is {limit}"])
    if contains_nul(value):
        raise ConfigError([f"{name} must not contain NUL characters (\\u0000)"])
