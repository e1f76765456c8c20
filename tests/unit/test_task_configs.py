"""Per-type task configuration: defaults filled in, anything else refused with a readable reason."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agenttasks.application.task_configs import (
    CONFIG_TYPES,
    MAX_CONFIG_BYTES,
    ConfigError,
    normalized_config,
)


@pytest.mark.parametrize(
    ("task_type", "config", "expected"),
    [
        (
            "summary",
            {"content": "Some text."},
            {"content": "Some text.", "urls": [], "max_length": 200},
        ),
        (
            "research",
            {"topic": "tides", "questions": ["Why?"]},
            {"topic": "tides", "urls": [], "questions": ["Why?"], "content": None},
        ),
        (
            "content_generation",
            {"topic": "tea"},
            {
                "topic": "tea",
                "content_type": "article",
                "length": 500,
                "tone": "professional",
                "keywords": [],
            },
        ),
        (
            "data_analysis",
            {"data": [{"month": "jan", "sales": 3}]},
            {"data": [{"month": "jan", "sales": 3}], "analysis_type": "statistical"},
        ),
        (
            "custom",
            {"steps": ["Outline it", {"action": "fetch", "url": "https://example.org/a"}]},
            {"steps": ["Outline it", {"action": "fetch", "url": "https://example.org/a"}]},
        ),
    ],
)
def test_a_valid_config_is_stored_with_its_defaults_filled_in(
    task_type: str, config: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert normalized_config(task_type, config) == expected


@pytest.mark.parametrize(
    ("task_type", "config", "fragment"),
    [
        ("summary", {}, "needs `content` or `urls`"),
        ("summary", {"content": "x", "colour": "red"}, "unknown field `colour`"),
        ("summary", {"urls": ["file:///etc/passwd"]}, "task_config.urls[0]"),
        ("summary", {"content": "x", "max_length": 5}, "task_config.max_length"),
        ("research", {"urls": []}, "missing required field `topic`"),
        ("research", {"topic": "x", "questions": ["q"] * 21}, "task_config.questions"),
        (
            "content_generation",
            {"topic": "x", "content_type": "sonnet"},
            "task_config.content_type",
        ),
        ("data_analysis", {"data": {}}, "at least one named series"),
        ("data_analysis", {"data": {"a": ["x"]}}, "task_config.data"),
        ("data_analysis", {"data": [{"name": "a"}]}, "no numeric field"),
        ("data_analysis", {"data": {"a": [1]}, "analysis_type": "magic"}, "analysis_type"),
        ("custom", {"steps": []}, "task_config.steps"),
        ("custom", {"steps": [{"action": "teleport"}]}, "task_config.steps[0].action"),
        ("poetry", {}, "unknown task_type 'poetry'"),
        ("summary", ["not", "an", "object"], "must be a JSON object"),
    ],
)
def test_a_bad_config_is_refused_with_a_message_naming_the_field(
    task_type: str, config: Any, fragment: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        normalized_config(task_type, config)
    assert fragment in str(refused.value), refused.value.errors


def test_an_oversized_config_is_refused_with_its_size() -> None:
    with pytest.raises(ConfigError, match=f"the limit is {MAX_CONFIG_BYTES}"):
        normalized_config("summary", {"content": "x" * (MAX_CONFIG_BYTES + 1)})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(task_type=st.sampled_from([*CONFIG_TYPES, "other"]), config=json_values)
def test_any_json_is_either_accepted_or_refused_with_a_config_error(
    task_type: str, config: Any
) -> None:
    try:
        result = normalized_config(task_type, config)
    except ConfigError as refused:
        errors = refused.errors
    else:
        assert normalized_config(task_type, result) == result, "normalizing is idempotent"
        return
    assert errors
    assert all(isinstance(e, str) and e for e in errors)


def test_a_nul_character_anywhere_in_a_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="NUL"):
        normalized_config("research", {"topic": "tides", "questions": ["why\x00"]})
    assert normalized_config("summary", {"content": "a literal \\u0000 is fine"})


@pytest.mark.parametrize("task_type", list(CONFIG_TYPES))
def test_max_tokens_is_kept_when_asked_and_absent_otherwise(task_type: str) -> None:
    config = {
        "summary": {"content": "x"},
        "research": {"topic": "tides"},
        "content_generation": {"topic": "tides"},
        "data_analysis": {"data": {"a": [1, 2]}},
        "custom": {"steps": ["x"]},
    }[task_type]
    assert "max_tokens" not in normalized_config(task_type, config)  # stored as before
    assert normalized_config(task_type, {**config, "max_tokens": 64})["max_tokens"] == 64


def test_a_chain_may_use_a_hundred_references_to_earlier_steps_and_no_more() -> None:
    assert normalized_config("custom", {"steps": ["x", "{{previous}}" * 100]})
    with pytest.raises(ConfigError, match="at most 100"):
        normalized_config("custom", {"steps": ["x", "{{previous}}" * 101]})
