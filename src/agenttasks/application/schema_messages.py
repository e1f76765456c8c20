"""Our words for a failed JSON Schema rule: the path, the rule, values cut short.

jsonschema's own messages echo whole instance values (and, with remote refs, fetched
documents); nothing of them reaches a user. Each message here is built from the keyword, the
schema's value for it and the instance, each truncated.
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterable
from typing import Any

from jsonschema.exceptions import ValidationError

_REPR = reprlib.Repr()
_REPR.maxstring = 40
_REPR.maxother = 40
_REPR.maxlist = _REPR.maxdict = _REPR.maxtuple = _REPR.maxset = 4
_REPR.maxlevel = 2
_MAX_PART_CHARS = 40


def short(value: Any) -> str:
    """`value` as Python writes it, cut to a few dozen characters."""
    return _REPR.repr(value)


def path_text(name: str, path: Iterable[Any]) -> str:
    """`name.a.b[0]`, each part cut short."""
    text = name
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            part = str(part)
            cut = part[:_MAX_PART_CHARS] + ("..." if len(part) > _MAX_PART_CHARS else "")
            text += f".{cut}"
    return text


def describe(error: ValidationError) -> list[str]:
    """What `error` broke, in our words (a `required` error can name several fields)."""
    keyword, value, instance = error.validator, error.validator_value, error.instance
    if keyword == "required" and isinstance(instance, dict) and isinstance(value, list):
        missing = [name for name in value if name not in instance]
        return [f"{short(name)} is a required property" for name in missing]
    if isinstance(keyword, str) and keyword in _OURS:
        return [error.message]  # written by our own keyword (schema_keywords.py), already short
    template = _TEMPLATES.get(str(keyword), "{instance} breaks the `{keyword}` rule")
    return [template.format(instance=short(instance), value=short(value), keyword=keyword)]


# Keywords implemented in schema_keywords.py, whose messages we wrote.
_OURS = frozenset({"pattern", "additionalProperties", "uniqueItems"})
_TEMPLATES = {
    "type": "{instance} is not of type {value}",
    "enum": "{instance} is not one of {value}",
    "const": "{instance} is not the constant {value}",
    "minimum": "{instance} is less than the minimum of {value}",
    "maximum": "{instance} is greater than the maximum of {value}",
    "exclusiveMinimum": "{instance} is less than or equal to the minimum of {value}",
    "exclusiveMaximum": "{instance} is greater than or equal to the maximum of {value}",
    "multipleOf": "{instance} is not a multiple of {value}",
    "minLength": "{instance} is too short",
    "maxLength": "{instance} is too long",
    "minItems": "{instance} is too short",
    "maxItems": "{instance} is too long",
    "minProperties": "{instance} has fewer than {value} properties",
    "maxProperties": "{instance} has more than {value} properties",
    "contains": "{instance} has no item valid under `contains`",
    "minContains": "{instance} has too few items valid under `contains`",
    "maxContains": "{instance} has too many items valid under `contains`",
    "items": "{instance} has more items than the schema allows",
    "dependentRequired": "{instance} lacks a property another one requires ({value})",
    "not": "{instance} must not be valid under the `not` schema",
    "anyOf": "{instance} is not valid under any of the `anyOf` schemas",
    "oneOf": "{instance} is not valid under exactly one of the `oneOf` schemas",
    "None": "{instance} is not allowed here (the schema says false)",
}
