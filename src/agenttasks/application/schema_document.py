"""The checks a template's JSON Schema passes as a document before anything evaluates it.

A schema is user input and hostile until shown otherwise. It may refer only inside itself
(`#`, `#/json/pointer` to a subschema, `#anchor`); `$id` is refused because it changes what a
`#...` ref means, and `unevaluated*` because jsonschema evaluates them outside any bound (and
with Python's backtracking `re`). Every `pattern` must compile on RE2 (linear time). Size,
depth and the number of objects are capped so the later checks stay cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from agenttasks.application.schema_messages import path_text, short
from agenttasks.application.schema_regex import PatternRefused, compiled

# Keywords whose value is one subschema, a list of them, or a map of names to them. Anything
# else (enum, const, default, unknown keywords) is data: never evaluated, never a ref target.
_ONE = frozenset(
    {"additionalProperties", "propertyNames", "items", "contains", "not", "if", "then", "else"}
)
_MANY = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_NAMED = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_REFS = ("$ref", "$dynamicRef", "$recursiveRef")
_REFUSED = {
    "$id": "$id is not allowed: a template's schema is one document (refer with `#...`)",
    "unevaluatedProperties": "unevaluatedProperties is not supported in template schemas",
    "unevaluatedItems": "unevaluatedItems is not supported in template schemas",
}
_DIALECTS = frozenset(
    {
        "https://json-schema.org/draft/2020-12/schema",
        "https://json-schema.org/draft/2020-12/schema#",
    }
)

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class SchemaLimits:
    """Caps on a template's JSON Schema and on the work of validating against it."""

    max_bytes: int = 64 * 1024
    max_depth: int = 32
    max_subschemas: int = 500  # checking a schema costs ~0.3 ms per object here
    max_pattern_chars: int = 1000
    max_validation_steps: int = 50_000
    max_validation_depth: int = 100
    # Checked schemas whose validators each process keeps (least recently used out): checking
    # a small schema costs ~2 ms, every task created from a template paid it (PERF12). 0: none.
    validators_kept: int = 64


class DocumentRefused(ValueError):
    """The schema document breaks one of the rules above; the message is ours."""


def check_document(schema: dict[str, Any], limits: SchemaLimits, name: str) -> None:
    """Raises DocumentRefused naming where in the schema it breaks a rule."""
    walk = _Walk(limits, name)
    walk.run(schema)
    for where, ref in walk.refs:
        if not _resolves(ref, walk):
            raise DocumentRefused(
                f"`{path_text(name, where)}`: {short(ref)} points at no subschema of this schema"
            )


class _Walk:
    def __init__(self, limits: SchemaLimits, name: str) -> None:
        self.limits, self.name = limits, name
        self.schemas: set[tuple[str, ...]] = set()
        self.anchors: set[str] = set()
        self.refs: list[tuple[Path, str]] = []
        self.objects = 0

    def run(self, root: dict[str, Any]) -> None:
        # (value, path, depth, is_schema): an explicit stack, so depth cannot exhaust ours.
        stack: list[tuple[Any, Path, int, bool]] = [(root, (), 1, True)]
        while stack:
            value, where, depth, is_schema = stack.pop()
            if is_schema and isinstance(value, bool):
                self.schemas.add(_key(where))
            if not isinstance(value, dict | list):
                continue
            if depth > self.limits.max_depth:
                self.refuse(where, f"nests deeper than {self.limits.max_depth} levels")
            if isinstance(value, list):
                for index, item in enumerate(value):
                    stack.append((item, (*where, index), depth + 1, self.holds(where)))
                continue
            self.objects += 1
            if self.objects > self.limits.max_subschemas:
                self.refuse((), f"has more than {self.limits.max_subschemas} objects")
            if is_schema:
                self.schema(value, where)
            for key, child in value.items():
                child_is_schema = (is_schema and key in _ONE) or self.holds(where)
                stack.append((child, (*where, key), depth + 1, child_is_schema))

    def holds(self, where: Path) -> bool:
        """Whether the value at `where` is a list or map of subschemas (allOf, properties...)."""
        if not where or _key(where[:-1]) not in self.schemas:
            return False
        return where[-1] in _MANY | _NAMED

    def schema(self, schema: dict[str, Any], where: Path) -> None:
        self.schemas.add(_key(where))
        for keyword, message in _REFUSED.items():
            if keyword in schema:
                self.refuse((*where, keyword), message)
        dialect = schema.get("$schema")
        if dialect is not None and dialect not in _DIALECTS:
            self.refuse((*where, "$schema"), "only draft 2020-12 schemas are accepted")
        for keyword in _REFS:
            ref = schema.get(keyword)
            if ref is None:
                continue
            if not isinstance(ref, str) or not ref.startswith("#"):
                self.refuse(
                    (*where, keyword),
                    f"{short(ref)} refers outside this schema; only `#...` refs are allowed",
                )
            self.refs.append(((*where, keyword), ref))
        for keyword in ("$anchor", "$dynamicAnchor"):
            if isinstance(anchor := schema.get(keyword), str):
                self.anchors.add(anchor)
        if isinstance(pattern := schema.get("pattern"), str):
            self.pattern((*where, "pattern"), pattern)
        if isinstance(patterns := schema.get("patternProperties"), dict):
            for pattern in patterns:
                self.pattern((*where, "patternProperties", pattern), pattern)

    def pattern(self, where: Path, pattern: str) -> None:
        if len(pattern) > self.limits.max_pattern_chars:
            self.refuse(where, f"a pattern may have at most {self.limits.max_pattern_chars} chars")
        try:
            compiled(pattern)
        except PatternRefused as error:
            self.refuse(where, str(error))

    def refuse(self, where: Path, message: str) -> None:
        raise DocumentRefused(f"`{path_text(self.name, where)}`: {message}")


def _resolves(ref: str, walk: _Walk) -> bool:
    fragment = unquote(ref[1:])
    if fragment == "":
        return True
    if not fragment.startswith("/"):
        return fragment in walk.anchors
    parts = tuple(p.replace("~1", "/").replace("~0", "~") for p in fragment[1:].split("/"))
    return parts in walk.schemas


def _key(where: Path) -> tuple[str, ...]:
    return tuple(str(part) for part in where)
