"""Hypothesis throws malformed requests at the API: none of them may get a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agenttasks.servers.nats import EmbeddedNats
from tests.integration.api_client import api_in_thread, bearer

BASE = "/api/v1/utils"
ALICE = bearer("alice")
FUZZ = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)
task_like = st.fixed_dictionaries(
    {},
    optional={
        "title": st.one_of(st.text(max_size=300), json_values),
        "task_type": st.one_of(
            st.sampled_from(
                ["summary", "research", "content_generation", "data_analysis", "custom"]
            ),
            json_values,
        ),
        "task_config": json_values,
        "priority": st.one_of(st.sampled_from(["low", "urgent", "URGENT"]), json_values),
        "max_retries": json_values,
        "timeout_seconds": json_values,
        "unexpected": json_values,
    },
)
raw_bodies = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    st.sampled_from([b"", b"{", b"[]", b"null", b'{"title": "\\ud800"}', b"1e999999"]),
)


@pytest.fixture
def api(database_url: str, nats_server: EmbeddedNats) -> Iterator[httpx.Client]:
    with api_in_thread(database_url, nats_server) as url, httpx.Client(base_url=url) as client:
        yield client


def assert_client_error(response: Any) -> None:
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")


@FUZZ
@given(body=st.one_of(task_like, json_values))
def test_generated_task_bodies_never_get_a_server_error(api: httpx.Client, body: Any) -> None:
    assert_client_error(api.post(f"{BASE}/ai-tasks/", json=body, headers=ALICE))


@FUZZ
@given(raw=raw_bodies, path=st.sampled_from(["/ai-tasks/", "/validate-task-config/"]))
def test_raw_garbage_bodies_never_get_a_server_error(
    api: httpx.Client, raw: bytes, path: str
) -> None:
    headers = {**ALICE, "Content-Type": "application/json"}
    assert_client_error(api.post(f"{BASE}{path}", content=raw, headers=headers))


@FUZZ
@given(
    params=st.dictionaries(
        st.sampled_from(
            ["status", "task_type", "priority", "search", "ordering", "page", "page_size"]
        ),
        st.text(max_size=40),
        max_size=4,
    )
)
def test_generated_list_queries_never_get_a_server_error(
    api: httpx.Client, params: dict[str, str]
) -> None:
    assert_client_error(api.get(f"{BASE}/ai-tasks/", params=params, headers=ALICE))


@FUZZ
@given(
    task_id=st.one_of(
        st.uuids().map(str),
        st.text(
            st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/?#%"),
            min_size=1,
            max_size=40,
        ),
    ),
    action=st.sampled_from(["", "cancel/", "retry/", "updates/", "events/"]),
)
def test_generated_task_paths_never_get_a_server_error(
    api: httpx.Client, task_id: str, action: str
) -> None:
    method = api.post if action in ("cancel/", "retry/") else api.get
    assert_client_error(method(f"{BASE}/ai-tasks/{task_id}/{action}", headers=ALICE))


@FUZZ
@given(
    header=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80).map(
        str.strip
    )
)
def test_generated_authorization_headers_get_401_never_500(api: httpx.Client, header: str) -> None:
    response = api.get(f"{BASE}/ai-tasks/", headers={"Authorization": header})
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
