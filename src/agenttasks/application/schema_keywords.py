"""A jsonschema validator whose work is bounded: every keyword application is paid for.

Nested `anyOf`s or a `$ref` back into its own schema make plain jsonschema take exponential
time (or recurse until Python gives up). Here each keyword application draws on a budget of
steps (more for keywords that loop over the instance or the schema's value) and on a nesting
depth; running out raises ValidationTooComplex. Patterns run on RE2, `uniqueItems` hashes
instead of comparing every pair, and refs resolve against an empty registry, which retrieves
nothing: a ref that is not inside the schema cannot be followed even if a check missed it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError
from referencing import Registry

from agenttasks.application.schema_messages import short
from agenttasks.application.schema_regex import PatternRefused, search

Keyword = Callable[[Any, Any, Any, dict[str, Any]], Any]


class ValidationTooComplex(Exception):
    """Validating took more steps, or nested deeper, than the limits allow."""


@dataclass
class Budget:
    """What one validation may still spend, and how deep it is now."""

    steps: int
    max_depth: int
    depth: int = 0

    def charge(self, cost: int) -> None:
        """Takes `cost` steps; ValidationTooComplex when none are left."""
        self.steps -= cost
        if self.steps < 0:
            raise ValidationTooComplex("steps")


_BUDGET: ContextVar[Budget] = ContextVar("schema_budget")


def bounded_validator(schema: dict[str, Any]) -> Any:
    """A validator for a checked schema; iterate its errors only inside `spending`."""
    return BoundedValidator(schema, registry=Registry())


def spending(budget: Budget) -> Any:
    """Sets `budget` for validations in this context; returns the token to reset with."""
    return _BUDGET.set(budget)


def done_spending(token: Any) -> None:
    """Puts back the budget that was in force before `spending`."""
    _BUDGET.reset(token)


# Steps per application, weighted so that one step costs a few microseconds whatever the
# keyword: following a ref (a lookup, a new validator) costs as much as ten plain keywords.
_REF_COST = 10


def _cost(keyword: str, value: Any, instance: Any) -> int:
    size = len(instance) if isinstance(instance, str | list | dict) else 0
    if keyword in ("$ref", "$dynamicRef"):
        return _REF_COST
    if keyword in ("anyOf", "oneOf", "allOf") and isinstance(value, list):
        return 1 + 2 * len(value)
    if keyword in ("enum", "properties") and isinstance(value, list | dict):
        return 1 + len(value)
    if keyword == "pattern":
        return 1 + size // 256  # RE2 is linear in the text
    if keyword == "patternProperties" and isinstance(value, dict):
        return 1 + size * len(value)
    if keyword in ("uniqueItems", "required", "additionalProperties", "propertyNames"):
        return 1 + size
    return 1


def _counted(keyword: str, apply: Keyword) -> Keyword:
    def counted(validator: Any, value: Any, instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
        budget = _BUDGET.get()
        budget.charge(_cost(keyword, value, instance))
        budget.depth += 1
        try:
            if budget.depth > budget.max_depth:
                raise ValidationTooComplex("depth")
            yield from apply(validator, value, instance, schema) or ()
        finally:
            budget.depth -= 1

    return counted


def _pattern(validator: Any, pattern: Any, instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield ValidationError(f"{short(instance)} does not match {short(pattern)}")


def _pattern_properties(
    validator: Any, patterns: Any, instance: Any, schema: dict[str, Any]
) -> Iterator[Any]:
    if not validator.is_type(instance, "object") or not isinstance(patterns, dict):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: Any, extra_schema: Any, instance: Any, schema: dict[str, Any]
) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    named = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    extras = [
        key
        for key in instance
        if key not in named and not any(_search(pattern, key) for pattern in patterns)
    ]
    if validator.is_type(extra_schema, "object"):
        for key in extras:
            yield from validator.descend(instance[key], extra_schema, path=key)
    elif extra_schema is False and extras:
        names = ", ".join(short(key) for key in sorted(extras)[:5])
        more = f" and {len(extras) - 5} more" if len(extras) > 5 else ""
        yield ValidationError(f"additional properties are not allowed ({names}{more})")


def _unique_items(
    validator: Any, unique: Any, instance: Any, schema: dict[str, Any]
) -> Iterator[Any]:
    if unique is not True or not validator.is_type(instance, "array"):
        return
    if len({_canonical(item) for item in instance}) < len(instance):
        yield ValidationError(f"{short(instance)} has non-unique elements")


def _canonical(value: Any) -> Any:
    # JSON Schema equality in hashable form: 1 == 1.0, but true is not 1.
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return ("number", int(value))
    if isinstance(value, int | float):
        return ("number", value)
    if isinstance(value, list):
        return ("array", tuple(_canonical(item) for item in value))
    if isinstance(value, dict):
        return ("object", tuple(sorted((k, _canonical(v)) for k, v in value.items())))
    return ("other", repr(value))


def _search(pattern: Any, text: str) -> bool:
    if not isinstance(pattern, str):
        return False
    try:
        return search(pattern, text)
    except PatternRefused:
        # Only reachable through a document the checks did not see as a schema.
        raise ValidationTooComplex("pattern") from None


def _refused(validator: Any, value: Any, instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    # The document checks refuse these keywords; jsonschema evaluates them unbounded and with
    # Python's backtracking `re`, so a schema that slipped past stops here.
    raise ValidationTooComplex("unevaluated")
    yield


_KEYWORDS: dict[str, Keyword] = {
    **Draft202012Validator.VALIDATORS,
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
    "uniqueItems": _unique_items,
    "unevaluatedProperties": _refused,
    "unevaluatedItems": _refused,
}
BoundedValidator: Any = validators.extend(
    Draft202012Validator,
    validators={name: _counted(name, apply) for name, apply in _KEYWORDS.items()},
)
