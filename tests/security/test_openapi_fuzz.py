"""schemathesis over every operation in /schema/openapi.json, against the real stack, as an
ordinary user and as an admin, with valid and with invalid inputs.

No request may get a 5xx, every error is problem+json, every response keeps to the schema the
API publishes, and no secret (canaries: see conftest.py) appears in any response or log line.
The fuzz runs once per module; each test judges one property of what it saw.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from agenttasks.servers.postgres import EmbeddedPostgres
from tests.integration.api_client import bearer
from tests.security.conftest import Secrets, canary_api, is_problem, restore_hypothesis

# Examples per (operation, identity, mode, id source): about 1,000 requests in all, which
# finishes in about a minute on two busy cores.
EXAMPLES = 6
IDENTITIES = {"user": "mallory", "admin": "root-admin"}
WEBHOOK_URL = "https://93.184.215.14/hook"  # registered, never sent to (no deliverer runs)
STREAM_SECONDS = 1.0  # an SSE response never ends: read it this long, then judge what came
REQUEST_TIMEOUT = 30.0
# Generated `min_position`s are mostly far beyond the newest event: each waits out the API's
# read wait before its 400. A second, not the default five, answers them the same way sooner
# (about a minute of the fuzz); a position that exists is reached at once in this quiet stack.
READ_WAIT_MS = 1_000
# Importing schemathesis patched hypothesis for every test in this session; undone at once.
restore_hypothesis()
CONFORMANCE = [
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
VALID_TASKS: list[dict[str, Any]] = [
    {"title": "summary", "task_type": "summary", "task_config": {"content": "Some text."}},
    {"title": "research", "task_type": "research", "task_config": {"topic": "tides"}},
    {"title": "article", "task_type": "content_generation", "task_config": {"topic": "tides"}},
    {"title": "numbers", "task_type": "data_analysis", "task_config": {"data": {"a": [1, 2]}}},
]
VALID_BODIES: dict[str, list[dict[str, Any]]] = {
    "POST /api/v1/utils/ai-tasks": VALID_TASKS,
    "POST /api/v1/utils/ai-task-templates/{template_id}/create_task": [
        {},
        {"title": "from a template", "priority": "high"},
    ],
    # A public address written out: the SSRF guard passes it without a DNS lookup.
    "POST /api/v1/utils/webhooks": [
        {"url": WEBHOOK_URL},
        {"url": WEBHOOK_URL, "events": ["task.failed"]},
    ],
}
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,  # the same requests on every run, so CI cannot flake on a lucky draw
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@dataclass
class Exchange:
    """One request the fuzz sent and what came back."""

    identity: str
    operation: str
    mode: str
    request: str
    status: int
    headers: dict[str, str]
    body: str
    conformance: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"[{self.identity}, {self.mode}] {self.request}\n"
            f"-> {self.status} {self.headers.get('content-type', '')} {self.body[:500]}"
        )


@dataclass
class FuzzRun:
    """Everything the fuzz saw: the operations, the exchanges, the log lines."""

    operations: list[str]
    exchanges: list[Exchange]
    log_lines: list[str]
    log_sources: set[str]
    secrets: Secrets


def _seed(url: str) -> dict[str, str]:
    """A fresh task and template of the fuzzing user, so that generated ids meet real ones."""
    headers = bearer(IDENTITIES["user"])
    with httpx.Client(base_url=f"{url}/api/v1/utils", headers=headers, timeout=30) as client:
        task = client.post("/ai-tasks/", json=VALID_TASKS[0])
        assert task.status_code == 201, task.text
        template = client.post(
            "/ai-task-templates/",
            json={"name": "seed", "task_type": "summary", "default_config": {"content": "x"}},
        )
        assert template.status_code == 201, template.text
        # One endpoint at a time (DELETE removes it), so the per-user cap is never reached here.
        listed = client.get("/webhooks/").json()["results"]
        endpoint = (
            listed[0] if listed else client.post("/webhooks/", json={"url": WEBHOOK_URL}).json()
        )
    return {
        "task_id": task.json()["id"],
        "template_id": template.json()["id"],
        "endpoint_id": endpoint["id"],
    }


def _strategies(operation: Any, url: str) -> Iterator[st.SearchStrategy[Any]]:
    """Generated cases for `operation`: wholly generated, on real ids, with valid bodies."""
    ids: dict[str, str] | None = None
    if names := [p.name for p in operation.path_parameters]:
        seeds = _seed(url)
        ids = {name: seeds[name] for name in names} if set(names) <= set(seeds) else None
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        yield operation.as_strategy(mode)
        if ids is not None:
            yield operation.as_strategy(mode, path_parameters=ids)
    # A schema of `object` for a config almost never yields a valid one by chance.
    if bodies := VALID_BODIES.get(operation.label):
        yield st.sampled_from(bodies).flatmap(
            lambda body: operation.as_strategy(
                GenerationMode.POSITIVE, path_parameters=ids, body=body
            )
        )


def _fuzz_operation(operation: Any, url: str, session: requests.Session) -> list[Exchange]:
    responses = str(list(operation.definition.raw["responses"].values()))
    timeout = STREAM_SECONDS if "event-stream" in responses else REQUEST_TIMEOUT
    seen: list[Exchange] = []
    for strategy in _strategies(operation, url):
        for identity, user in IDENTITIES.items():
            headers = bearer(user, admin=identity == "admin")

            def send(
                case: Any, identity: str = identity, headers: dict[str, str] = headers
            ) -> None:
                response = case.call(
                    base_url=url, session=session, headers=headers, timeout=timeout
                )
                exchange = Exchange(
                    identity=identity,
                    operation=operation.label,
                    mode=case.meta.generation.mode.value,
                    request=case.as_curl_command(headers=headers),
                    status=response.status_code,
                    headers={k.lower(): ", ".join(v) for k, v in response.headers.items()},
                    body=response.content.decode("utf-8", "replace"),
                )
                try:
                    case.validate_response(response, checks=CONFORMANCE, headers=headers)
                except FailureGroup as failures:  # kept, judged by a test below
                    exchange.conformance = [f"{f.title}: {f.message}" for f in failures.exceptions]
                seen.append(exchange)

            _run(strategy, send)
    return seen


def _run(strategy: st.SearchStrategy[Any], send: Callable[[Any], None]) -> None:
    @FUZZ
    @given(case=strategy)
    def examples(case: Any) -> None:
        send(case)

    examples()


@pytest.fixture(scope="module")
def fuzz(
    postgres: EmbeddedPostgres,
    tmp_path_factory: pytest.TempPathFactory,
    nats_passwords: dict[str, str],
) -> FuzzRun:
    operations, exchanges = [], []
    try:
        with (
            canary_api(
                postgres,
                tmp_path_factory.mktemp("nats"),
                nats_passwords,
                read_wait_ms=READ_WAIT_MS,
            ) as api,
            requests.Session() as session,
        ):
            schema = schemathesis.openapi.from_url(f"{api.url}/schema/openapi.json")
            for result in schema.get_all_operations():
                if isinstance(result, Err):
                    raise result.err()  # the API's own schema must load whole
                operation = result.ok()
                operations.append(operation.label)
                exchanges.extend(_fuzz_operation(operation, api.url, session))
    finally:
        restore_hypothesis()
    # Read after the stack stopped, so its shutdown's log lines are judged too.
    return FuzzRun(
        operations,
        exchanges,
        api.logs.lines(),
        {record.name for record in api.logs.records},
        api.secrets,
    )


def test_the_fuzz_reached_every_operation_and_got_past_validation(fuzz: FuzzRun) -> None:
    statuses = Counter((e.operation, e.status) for e in fuzz.exchanges)
    summary = "\n".join(f"{n:4} x {op} {status}" for (op, status), n in sorted(statuses.items()))
    assert len(fuzz.operations) >= 20, fuzz.operations
    # Past validation: a success, or a refusal by the domain's rules (without a worker no task
    # ever fails, so retry can only be refused).
    reached = {op for op, status in statuses if status < 300 or status == 409}
    missing = [op for op in fuzz.operations if op not in reached]
    assert not missing, f"never got past validation: {missing}\n{summary}"


def test_no_request_gets_a_server_error(fuzz: FuzzRun) -> None:
    errors = [e for e in fuzz.exchanges if e.status >= 500]
    assert not errors, "\n\n".join(map(str, errors[:10]))


def test_every_error_is_problem_json(fuzz: FuzzRun) -> None:
    wrong = [
        e for e in fuzz.exchanges if e.status >= 400 and not is_problem(e.headers, e.body, e.status)
    ]
    assert not wrong, "\n\n".join(map(str, wrong[:10]))


def _report(broken: list[tuple[Exchange, list[str]]]) -> str:
    kinds = Counter(
        f"{e.operation} -> {e.status}: {c.splitlines()[0]}" for e, cs in broken for c in cs
    )
    first = f"{broken[0][0]}\n{broken[0][1][0][:1500]}" if broken else ""
    return "\n".join(f"{n:4} x {k}" for k, n in kinds.most_common(30)) + "\n\n" + first


def test_no_response_breaks_the_published_schema(fuzz: FuzzRun) -> None:
    broken = [(e, e.conformance) for e in fuzz.exchanges if e.conformance]
    assert not broken, _report(broken)


def test_no_response_carries_a_secret(fuzz: FuzzRun) -> None:
    leaks = [
        (names, e)
        for e in fuzz.exchanges
        if (names := fuzz.secrets.found_in(e.body + json.dumps(e.headers)))
    ]
    assert not leaks, "\n\n".join(f"{names}: {e}" for names, e in leaks[:10])


def test_no_log_line_carries_a_secret(fuzz: FuzzRun) -> None:
    # The capture must have seen the stack's own loggers, or this test could not fail.
    assert any(source.startswith("agenttasks") for source in fuzz.log_sources), fuzz.log_sources
    leaks = [(names, line) for line in fuzz.log_lines if (names := fuzz.secrets.found_in(line))]
    assert not leaks, "\n\n".join(f"{names}: {line[:2000]}" for names, line in leaks[:10])


def test_hypothesis_is_as_shipped_again_after_the_fuzz(fuzz: FuzzRun) -> None:
    from hypothesis import core
    from hypothesis.vendor import pretty

    assert getattr(core, "RepresentationPrinter") is pretty.RepresentationPrinter  # noqa: B009
    assert getattr(core, "BUFFER_SIZE") == 8 * 1024  # noqa: B009
