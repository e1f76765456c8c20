"""A template's JSON Schema is hostile input: it reads nothing, stalls nothing, echoes nothing.

Against the real API (Postgres, NATS, every projector): refs that leave the schema are refused
before anything is fetched, patterns run on RE2, nested `anyOf` and recursive refs stop at a
budget, oversize and overdeep schemas are refused, and every message is ours.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agenttasks.application.schema_keywords import (
    Budget,
    bounded_validator,
    done_spending,
    spending,
)
from agenttasks.application.schema_messages import short
from agenttasks.application.task_configs import ConfigError
from agenttasks.application.template_configs import check_definition, merged_config, schema_errors
from agenttasks.servers.nats import EmbeddedNats
from tests.integration.api_client import SECRET, Api, bearer, serving, settings_for
from tests.integration.stack import running_stack
from tests.integration.test_statistics import all_projections

TEMPLATES = "/api/v1/utils/ai-task-templates"
ALICE = bearer("alice")
CANARY = "canary-secret-3f9a1c7e5b2d"


@pytest.fixture
async def api(database_url: str, nats_server: EmbeddedNats) -> AsyncIterator[Api]:
    async with (
        running_stack(database_url, nats_server, projections=all_projections()) as stack,
        serving(settings_for(database_url, nats_server)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield Api(client, stack, url)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP port that records whether anything connected (a fetch of a remote ref would)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        yield server


def connected(server: socket.socket) -> bool:
    try:
        connection, _ = server.accept()
    except BlockingIOError:
        return False
    connection.close()
    return True


def template(config_schema: Any, default_config: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": "Hostile",
        "task_type": "content_generation",
        "default_config": {"topic": "Templates"} if default_config is None else default_config,
        "config_schema": config_schema,
    }


async def refused(api: Api, body: dict[str, Any], deadline: float = 30) -> dict[str, Any]:
    response = await api.client.post(f"{TEMPLATES}/", json=body, headers=ALICE, timeout=deadline)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    return problem


@pytest.mark.parametrize(
    ("ref", "where"),
    [
        ("file://{secrets}#/x", "config_schema.$ref"),
        ("file:///proc/self/cwd/.agenttasks/secrets.json#/x", "config_schema.$ref"),
        ("http://127.0.0.1:{port}/schema.json", "config_schema.properties.topic.$ref"),
        ("ftp://127.0.0.1:{port}/schema.json", "config_schema.properties.topic.$ref"),
        ("urn:example:schema", "config_schema.properties.topic.$ref"),
        ("other.json#/x", "config_schema.properties.topic.$ref"),
    ],
)
async def test_a_ref_outside_the_schema_is_refused_and_nothing_is_read(
    api: Api, tmp_path: Path, listener: socket.socket, ref: str, where: str
) -> None:
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"jwt_secret": SECRET, "nats": CANARY}))
    ref = ref.format(secrets=secrets, port=listener.getsockname()[1])
    schema: dict[str, Any] = (
        {"$ref": ref} if where == "config_schema.$ref" else {"properties": {"topic": {"$ref": ref}}}
    )
    response = await api.client.post(f"{TEMPLATES}/", json=template(schema), headers=ALICE)
    assert response.status_code == 400, response.text
    assert f"`{where}`" in response.json()["detail"]
    assert "only `#...` refs are allowed" in response.json()["detail"]
    assert CANARY not in response.text
    assert SECRET not in response.text
    assert not connected(listener), "the API connected to a remote ref"


async def test_id_and_anchor_tricks_cannot_bring_in_a_remote_document(api: Api) -> None:
    base = await refused(api, template({"$id": "file:///etc/", "$ref": "#/x"}))
    assert base["errors"] == [
        "`config_schema.$id`: $id is not allowed: a template's schema is one document "
        "(refer with `#...`)"
    ]
    nested = await refused(
        api, template({"$defs": {"a": {"$id": "http://127.0.0.1:1/", "$anchor": "a"}}})
    )
    assert "`config_schema.$defs.a.$id`" in nested["detail"]
    dialect = await refused(api, template({"$schema": "http://127.0.0.1:1/meta.json"}))
    assert "`config_schema.$schema`" in dialect["detail"]
    into_data = await refused(
        api, template({"$ref": "#/default", "default": {"$ref": "http://127.0.0.1:1/"}})
    )
    assert "'#/default' points at no subschema of this schema" in into_data["detail"]
    missing = await refused(api, template({"properties": {"topic": {"$ref": "#nowhere"}}}))
    assert "`config_schema.properties.topic.$ref`" in missing["detail"]


async def test_refs_inside_the_schema_still_work(api: Api) -> None:
    schema = {
        "properties": {"topic": {"$ref": "#short"}, "length": {"$ref": "#/$defs/small"}},
        "$defs": {
            "short": {"$anchor": "short", "type": "string", "maxLength": 20},
            "small": {"type": "integer", "maximum": 100},
        },
    }
    created = await api.client.post(f"{TEMPLATES}/", json=template(schema), headers=ALICE)
    assert created.status_code == 201, created.text
    url = f"{TEMPLATES}/{created.json()['id']}/create_task/"
    config = {"topic": "x" * 60, "length": 101}
    too_long = await api.client.post(url, json={"task_config": config}, headers=ALICE)
    assert too_long.status_code == 400
    assert too_long.json()["errors"] == [
        "`task_config.length`: 101 is greater than the maximum of 100",
        f"`task_config.topic`: {short('x' * 60)} is too long",
    ]
    fine = {"topic": "x" * 20, "length": 100}
    made = await api.client.post(url, json={"task_config": fine}, headers=ALICE)
    assert made.status_code == 201, made.text


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        ({"properties": {"topic": {"pattern": "^(a)\\1$"}}}, "properties.topic.pattern"),
        ({"properties": {"topic": {"pattern": "(?=a)b"}}}, "properties.topic.pattern"),
        ({"properties": {"topic": {"pattern": "(?<!a)b"}}}, "properties.topic.pattern"),
        ({"patternProperties": {"(\\w)\\1": {}}}, "patternProperties.(\\w)\\1"),
        ({"properties": {"topic": {"pattern": "a{2000}"}}}, "properties.topic.pattern"),
    ],
)
async def test_a_pattern_re2_cannot_run_is_refused_when_saved(
    api: Api, schema: dict[str, Any], where: str
) -> None:
    problem = await refused(api, template(schema))
    assert problem["errors"] == [
        f"`config_schema.{where}`: the pattern cannot run on RE2: it is malformed, too large, "
        "or uses what RE2 lacks (backreferences, lookaround, repetition counts over 1000)"
    ]


async def test_a_catastrophic_pattern_is_checked_in_linear_time(api: Api) -> None:
    # Python's backtracking `re` needs ~2^40 steps for this default: the old code never answered.
    schema = {"properties": {"topic": {"pattern": "^(a+)+$"}}}
    problem = await refused(api, template(schema, {"topic": "a" * 40 + "!"}), deadline=20)
    assert problem["errors"] == [
        f"`default_config.topic`: {short('a' * 40 + '!')} does not match '^(a+)+$'"
    ]
    keys = {"patternProperties": {"^(a+)+$": {"type": "integer"}}, "additionalProperties": False}
    problem = await refused(api, template(keys, {"a" * 40 + "!": 1}), deadline=20)
    assert problem["errors"][0].startswith("`default_config`: additional properties are not")


def exponential_any_of(levels: int) -> dict[str, Any]:
    """2^levels paths through `anyOf`s that refer to the level below twice; ~2 KB of JSON."""
    defs: dict[str, Any] = {"a0": {"type": "integer"}}
    for level in range(1, levels + 1):
        below = {"$ref": f"#/$defs/a{level - 1}"}
        defs[f"a{level}"] = {"anyOf": [below, below]}
    return {"$defs": defs, "properties": {"topic": {"$ref": f"#/$defs/a{levels}"}}}


@pytest.mark.parametrize(
    ("schema", "why"),
    [
        (exponential_any_of(40), "it takes more than 50000 steps"),
        (
            {"properties": {"topic": {"$ref": "#"}}, "$ref": "#"},
            "it nests more than 100 levels deep",
        ),
        (
            {"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"},
            "it nests more than 100 levels deep",
        ),
    ],
)
async def test_exponential_and_recursive_schemas_stop_with_a_clear_error(
    api: Api, schema: dict[str, Any], why: str
) -> None:
    problem = await refused(api, template(schema), deadline=20)
    assert problem["errors"] == [
        f"config_schema is too complex to validate `default_config`: {why}"
    ]


async def test_oversize_overdeep_and_overwide_schemas_are_refused(api: Api) -> None:
    big = await refused(api, template({"description": "x" * 70_000}))
    assert big["errors"][0].startswith("config_schema is 70")
    assert big["errors"][0].endswith("bytes; the limit is 65536")
    deep: dict[str, Any] = {}
    for _ in range(40):
        deep = {"not": deep}
    too_deep = await refused(api, template(deep))
    assert too_deep["errors"][0].endswith("nests deeper than 32 levels")
    wide = {"properties": {f"p{i}": {} for i in range(600)}}
    too_wide = await refused(api, template(wide))
    assert too_wide["errors"] == ["`config_schema`: has more than 500 objects"]
    unevaluated = await refused(api, template({"unevaluatedProperties": False}))
    assert "unevaluatedProperties is not supported" in unevaluated["detail"]


async def test_messages_name_the_field_and_rule_and_cut_values_short(api: Api) -> None:
    schema = {"properties": {"topic": {"enum": ["x" * 500, "y"]}, "tone": {"const": "z" * 500}}}
    default = {"topic": CANARY * 50, "tone": "casual"}
    problem = await refused(api, template(schema, default))
    assert problem["errors"] == [
        f"`default_config.tone`: 'casual' is not the constant {short('z' * 500)}",
        f"`default_config.topic`: {short(CANARY * 50)} is not one of [{short('x' * 500)}, 'y']",
        "Expected `str` of length <= 500 - at `default_config.topic`",
    ]
    assert CANARY * 2 not in json.dumps(problem)
    assert len(short(CANARY * 50)) < 45, "values are cut to a few dozen characters"


async def test_health_answers_while_hostile_schemas_are_saved(api: Api) -> None:
    hostile = [
        template({"properties": {"topic": {"pattern": "^(a+)+$"}}}, {"topic": "a" * 40 + "!"}),
        template(exponential_any_of(40)),
        template({"$ref": "#", "properties": {"topic": {"$ref": "#"}}}),
    ] * 3

    async def health() -> int:
        # A deadline only so that the old code (which held the GIL for minutes) fails rather
        # than hangs; the claim is "answers", not "answers within".
        return (await api.client.get("/health", timeout=15)).status_code

    saves = [api.client.post(f"{TEMPLATES}/", json=body, headers=ALICE) for body in hostile]
    outcomes = await asyncio.gather(*saves, *(health() for _ in range(10)))
    assert [r.status_code for r in outcomes[: len(hostile)]] == [400] * len(hostile)
    assert outcomes[len(hostile) :] == [200] * 10


def test_a_validator_follows_no_remote_ref_even_past_the_document_checks(
    listener: socket.socket,
) -> None:
    # Defence in depth: built straight from an unchecked schema, the validator's registry is
    # empty and retrieves nothing.
    port = listener.getsockname()[1]
    validator = bounded_validator({"$ref": f"http://127.0.0.1:{port}/schema.json"})
    errors = schema_errors(validator, {"topic": "x"}, "task_config")
    assert errors == ["config_schema cannot be applied to this config"]
    assert not connected(listener)


def test_validation_outside_a_budget_is_refused() -> None:
    # The bounded keywords draw on the budget of their context; without one they do not run.
    validator = bounded_validator({"type": "object"})
    with pytest.raises(LookupError):
        list(validator.iter_errors({}))
    token = spending(Budget(steps=10, max_depth=5))
    try:
        assert list(validator.iter_errors({})) == []
    finally:
        done_spending(token)


def test_a_schema_or_config_nested_thousands_deep_is_refused_not_a_crash() -> None:
    deep: dict[str, Any] = {}
    for _ in range(5_000):
        deep = {"not": deep}
    with pytest.raises(ConfigError) as schema:
        check_definition("custom", {"steps": ["a"]}, deep)
    assert schema.value.errors == ["config_schema nests too deeply"]
    nested: list[Any] = []
    for _ in range(5_000):
        nested = [nested]
    recursive = {"additionalProperties": {"$ref": "#"}, "items": {"$ref": "#"}}
    with pytest.raises(ConfigError) as too_deep:
        merged_config("custom", {"steps": ["a"]}, recursive, {"extra": nested[0][0]})
    assert too_deep.value.errors == ["task_config nests too deeply"]
    shallower: list[Any] = []
    for _ in range(300):
        shallower = [shallower]
    with pytest.raises(ConfigError) as bounded:
        merged_config("custom", {"steps": ["a"]}, recursive, {"extra": shallower})
    assert bounded.value.errors[0] == (
        "config_schema is too complex to validate `task_config`: it nests more than 100 levels deep"
    )
