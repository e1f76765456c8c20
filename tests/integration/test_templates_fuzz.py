"""Hypothesis throws malformed templates, overrides and queries at the API: never a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agenttasks.servers.nats import EmbeddedNats
from tests.integration.api_client import api_in_thread, bearer
from tests.integration.test_api_fuzz import assert_client_error, json_values
from tests.integration.test_statistics import all_projections

TEMPLATES = "/api/v1/utils/ai-task-templates"
ALICE = bearer("alice")
FUZZ = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
schema_parts = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["object", "string", "array", 3, None]),
        "required": st.one_of(st.lists(st.text(max_size=8), max_size=3), json_values),
        "properties": st.dictionaries(
            st.text(max_size=8),
            st.fixed_dictionaries({}, optional={"type": json_values, "maximum": json_values}),
            max_size=3,
        ),
        "pattern": st.sampled_from(["(", "^a+$", "[", "\\"]),
        "$ref": st.sampled_from(["#/$defs/missing", "https://example.org/s.json", "#"]),
        "additionalProperties": json_values,
        "minLength": json_values,
    },
)
template_like = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.text(max_size=250), json_values),
        "task_type": st.one_of(st.sampled_from(["summary", "research", "custom"]), json_values),
        "description": json_values,
        "default_config": st.one_of(json_values, st.fixed_dictionaries({"content": json_values})),
        "config_schema": st.one_of(schema_parts, json_values),
        "shared": json_values,
        "owner": json_values,
    },
)


@pytest.fixture
def api(database_url: str, nats_server: EmbeddedNats) -> Iterator[httpx.Client]:
    """The API with every projector, on its own event loop in a thread (hypothesis is sync)."""
    with (
        api_in_thread(database_url, nats_server, all_projections()) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client


@FUZZ
@given(body=st.one_of(template_like, json_values))
def test_generated_template_bodies_never_get_a_server_error(api: httpx.Client, body: Any) -> None:
    response = api.post(f"{TEMPLATES}/", json=body, headers=ALICE)
    assert_client_error(response)
    if response.status_code == 201:
        revised = api.put(f"{TEMPLATES}/{response.json()['id']}/", json=body, headers=ALICE)
        assert_client_error(revised)


@FUZZ
@given(overrides=json_values, extra=st.dictionaries(st.text(max_size=10), json_values, max_size=3))
def test_generated_overrides_never_get_a_server_error(
    api: httpx.Client, overrides: Any, extra: dict[str, Any]
) -> None:
    template = api.post(
        f"{TEMPLATES}/",
        json={
            "name": "Fuzzed",
            "task_type": "summary",
            "default_config": {"content": "Text."},
            "config_schema": {"type": "object", "properties": {"max_length": {"maximum": 500}}},
        },
        headers=ALICE,
    )
    assert template.status_code == 201, template.text
    url = f"{TEMPLATES}/{template.json()['id']}/create_task/"
    assert_client_error(api.post(url, json={"task_config": overrides, **extra}, headers=ALICE))
    assert_client_error(api.post(url, json=overrides, headers=ALICE))


@FUZZ
@given(
    since=st.one_of(st.text(max_size=40), st.datetimes().map(str), st.dates().map(str)),
    scope=st.text(max_size=10),
)
def test_generated_statistics_queries_never_get_a_server_error(
    api: httpx.Client, since: str, scope: str
) -> None:
    params = {"since": since, "scope": scope}
    assert_client_error(api.get("/api/v1/utils/task-statistics/", params=params, headers=ALICE))
