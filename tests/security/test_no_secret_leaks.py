"""No secret in any error: one targeted request per kind of error (400 to 429, and /ready with
NATS down), against the real stack configured with canary secrets (conftest.py).

Each answer must have the status its kind calls for, be problem+json, and hold no secret in its
body or headers; no log line written while they ran may hold one either.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import jwt
import pytest

from agenttasks.servers.nats import start_nats
from agenttasks.servers.postgres import EmbeddedPostgres
from tests.integration.api_client import SECRET, bearer
from tests.security.conftest import CanaryApi, Secrets, canary_api, is_problem

BASE = "/api/v1/utils"
MALLORY = bearer("mallory")
ALICE = bearer("alice")
MAX_STREAMS_PER_USER = 20  # the default of AGENTTASKS_MAX_STREAMS_PER_USER


@dataclass
class Answer:
    """What one targeted request got back."""

    kind: str
    request: str
    status: int
    headers: dict[str, str]
    body: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.request} -> {self.status} {self.headers} {self.body[:800]}"


@dataclass
class Targeted:
    """The answers by kind, the log lines and their sources, the secrets they must not hold."""

    answers: dict[str, Answer]
    log_lines: list[str]
    log_sources: set[str]
    secrets: Secrets


def _token(claims: dict[str, object], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def _record(
    answers: dict[str, Answer],
    kind: str,
    client: httpx.Client,
    method: str,
    path: str,
    **kw: object,
) -> httpx.Response:
    response = client.request(method, path, **kw)  # type: ignore[arg-type]
    answers[kind] = Answer(
        kind,
        f"{method} {path}",
        response.status_code,
        {k.lower(): v for k, v in response.headers.items()},
        response.text,
    )
    return response


def _requests(api: CanaryApi, secrets_file: Path, client: httpx.Client) -> dict[str, Answer]:
    answers: dict[str, Answer] = {}

    def ask(kind: str, method: str, path: str, **kw: object) -> httpx.Response:
        return _record(answers, kind, client, method, path, **kw)

    created = client.post(
        f"{BASE}/ai-tasks/",
        json={"title": "mine", "task_type": "summary", "task_config": {"content": "text"}},
        headers=ALICE,
    )
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    now = int(time.time())

    ask("400 invalid body", "POST", f"{BASE}/ai-tasks/", json={"title": 1}, headers=MALLORY)
    ask(
        "400 malformed JSON",
        "POST",
        f"{BASE}/ai-tasks/",
        content=b'{"title": ',
        headers={**MALLORY, "Content-Type": "application/json"},
    )
    ask("400 page beyond bigint", "GET", f"{BASE}/ai-tasks/?page={10**20}", headers=MALLORY)
    ask("404 id not a uuid", "GET", f"{BASE}/ai-tasks/not-a-uuid/", headers=MALLORY)
    ask(
        "400 schema $ref to a file of secrets",
        "POST",
        f"{BASE}/ai-task-templates/",
        json={
            "name": "reader",
            "task_type": "summary",
            "config_schema": {"$ref": f"{secrets_file.as_uri()}#/x"},
            "default_config": {"content": "checked against the schema when saved"},
        },
        headers=MALLORY,
    )
    ask("401 no token", "GET", f"{BASE}/ai-tasks/")
    ask(
        "401 token of another secret",
        "GET",
        f"{BASE}/ai-tasks/",
        headers={"Authorization": "Bearer " + _token({"sub": "x", "exp": now + 60}, "k" * 40)},
    )
    ask(
        "401 expired token",
        "GET",
        f"{BASE}/ai-tasks/",
        headers={"Authorization": "Bearer " + _token({"sub": "x", "exp": now - 60})},
    )
    ask(
        "401 alg none",
        "GET",
        f"{BASE}/ai-tasks/",
        headers={"Authorization": "Bearer " + _token({"sub": "x", "exp": now + 60}, "", "none")},
    )
    ask("401 garbage token", "GET", f"{BASE}/ai-tasks/", headers={"Authorization": "Bearer ..."})
    ask(
        "403 statistics of everyone as a user",
        "GET",
        f"{BASE}/task-statistics/?scope=all",
        headers=MALLORY,
    )
    ask("404 another user's task", "GET", f"{BASE}/ai-tasks/{task_id}/", headers=MALLORY)
    ask("404 unknown route", "GET", f"{BASE}/no-such-thing/", headers=MALLORY)
    ask("405 wrong method", "DELETE", f"{BASE}/ai-tasks/", headers=MALLORY)
    assert client.post(f"{BASE}/ai-tasks/{task_id}/cancel/", headers=ALICE).status_code == 200
    ask("409 cancel twice", "POST", f"{BASE}/ai-tasks/{task_id}/cancel/", headers=ALICE)
    ask(
        "413 body over the limit",
        "POST",
        f"{BASE}/ai-tasks/",
        content=b'{"title": "' + b"x" * (11 * 1024 * 1024) + b'"}',
        headers={**MALLORY, "Content-Type": "application/json"},
    )
    ask(
        "415 body not declared JSON",
        "POST",
        f"{BASE}/ai-tasks/",
        content=json.dumps({"title": "t", "task_type": "summary", "task_config": {}}),
        headers={**MALLORY, "Content-Type": "text/plain"},
    )
    ask(
        "400 unknown task type, where some APIs say 422",
        "POST",
        f"{BASE}/ai-tasks/",
        json={"title": "t", "task_type": "no-such-type", "task_config": {}},
        headers=MALLORY,
    )
    with ExitStack() as held:
        for _ in range(MAX_STREAMS_PER_USER):
            stream = held.enter_context(
                client.stream("GET", f"{BASE}/tasks/stream/", headers=MALLORY)
            )
            assert stream.status_code == 200, stream.read()
        # Streamed: without a cap this answer is a stream that never ends.
        with client.stream("GET", f"{BASE}/tasks/stream/", headers=MALLORY) as extra:
            body = extra.read().decode() if extra.status_code != 200 else ""
            answers["429 one stream too many"] = Answer(
                "429 one stream too many",
                f"GET {BASE}/tasks/stream/",
                extra.status_code,
                {k.lower(): v for k, v in extra.headers.items()},
                body,
            )
    # Not errors, but documents built from the configuration: none may carry a secret.
    ask("200 OpenAPI document", "GET", "/schema/openapi.json")
    ask("200 dashboard page", "GET", "/")
    ask("200 ready", "GET", "/ready")
    # Last: readiness with NATS down reports why; the reason must name no credentials.
    port, directory = api.nats.port, api.nats.log_path.parent
    api.nats.stop()
    ask("503 ready with NATS down", "GET", "/ready")
    api.nats = start_nats(directory, port=port, passwords=api.nats.passwords)
    return answers


@pytest.fixture(scope="module")
def targeted(
    postgres: EmbeddedPostgres,
    tmp_path_factory: pytest.TempPathFactory,
    nats_passwords: dict[str, str],
) -> Targeted:
    with canary_api(postgres, tmp_path_factory.mktemp("nats"), nats_passwords) as api:
        # The shape of `agenttasks up`'s secrets.json, holding this stack's canaries.
        secrets_file = tmp_path_factory.mktemp("home") / "secrets.json"
        secrets_file.write_text(
            json.dumps({"jwt_secret": SECRET, "nats_passwords": nats_passwords})
        )
        with httpx.Client(base_url=api.url, timeout=30) as client:
            answers = _requests(api, secrets_file, client)
    return Targeted(
        answers, api.logs.lines(), {record.name for record in api.logs.records}, api.secrets
    )


KINDS = [
    ("400 invalid body", 400),
    ("400 malformed JSON", 400),
    ("400 page beyond bigint", 400),
    ("404 id not a uuid", 404),
    ("400 schema $ref to a file of secrets", 400),
    ("401 no token", 401),
    ("401 token of another secret", 401),
    ("401 expired token", 401),
    ("401 alg none", 401),
    ("401 garbage token", 401),
    ("403 statistics of everyone as a user", 403),
    ("404 another user's task", 404),
    ("404 unknown route", 404),
    ("405 wrong method", 405),
    ("409 cancel twice", 409),
    ("413 body over the limit", 413),
    ("415 body not declared JSON", 415),
    ("400 unknown task type, where some APIs say 422", 400),
    ("429 one stream too many", 429),
    ("503 ready with NATS down", 503),
]


@pytest.mark.parametrize(("kind", "status"), KINDS)
def test_each_kind_of_error_has_its_status_and_problem_json(
    targeted: Targeted, kind: str, status: int
) -> None:
    answer = targeted.answers[kind]
    assert answer.status == status, str(answer)
    assert is_problem(answer.headers, answer.body, status), str(answer)


DOCUMENTS = [("200 OpenAPI document", 200), ("200 dashboard page", 200), ("200 ready", 200)]


@pytest.mark.parametrize(("kind", "status"), KINDS + DOCUMENTS)
def test_no_answer_holds_a_secret(targeted: Targeted, kind: str, status: int) -> None:
    answer = targeted.answers[kind]
    assert answer.status == status, str(answer)
    assert not targeted.secrets.found_in(answer.body + json.dumps(answer.headers)), str(answer)


def test_no_log_line_written_meanwhile_holds_a_secret(targeted: Targeted) -> None:
    # The capture must have seen the stack's own loggers, or this test could not fail.
    assert any(s.startswith("agenttasks") for s in targeted.log_sources), targeted.log_sources
    leaks = [
        (names, line) for line in targeted.log_lines if (names := targeted.secrets.found_in(line))
    ]
    assert not leaks, "\n\n".join(f"{names}: {line[:2000]}" for names, line in leaks[:10])


def test_the_detector_finds_each_secret_raw_json_escaped_or_url_quoted(
    targeted: Targeted,
) -> None:
    found = targeted.secrets.found_in
    for name, value in targeted.secrets.values.items():
        assert name in found(f"detail: {value}")
        assert name in found(json.dumps({"detail": f"{value}"}))
        assert name in found(f"nats://relay:{quote(value, safe='')}@127.0.0.1:4222")
