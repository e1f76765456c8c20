"""The real roles with JSON logs and OpenTelemetry: one task's lines and spans join up by trace.

api, relay, projector and worker run as `agenttasks` processes (as `up` runs them) with
AGENTTASKS_LOG_FORMAT=json; the API and the worker export spans to a loopback OTLP collector,
the relay and the projector do not, so both ways of passing a trace on are crossed. One stack
serves the whole module: it runs the tasks, then stops, and the tests read what was left.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from agenttasks.servers.nats import start_nats
from agenttasks.servers.postgres import EmbeddedPostgres, create_database
from tests.conftest import free_port
from tests.fakes.otlp_collector import Collector, collector_server
from tests.integration.api_client import SECRET, bearer
from tests.waiting import wait_until

ALICE = bearer("alice")
SOURCE = str(Path(__file__).resolve().parents[2] / "src")
TASKS = "/api/v1/utils/ai-tasks/"
ROLES = {"api": "api", "relay": "relay", "project": "projector", "worker": "worker"}
TRACED = ("api", "worker")  # the roles that export spans
BODY = {"title": "traced", "task_type": "summary", "task_config": {"content": "Some text."}}
HOSTILE = {
    "too long": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01" + "-evil" * 50,
    "bad hex": "00-" + "xy" * 16 + "-" + "cd" * 8 + "-01",
    "upper case": "00-" + "AB" * 16 + "-" + "CD" * 8 + "-01",
    "zero trace": "00-" + "0" * 32 + "-" + "cd" * 8 + "-01",
}


@dataclass
class Run:
    """What the stack left behind: each role's log lines, the collector's spans, the answers."""

    logs: dict[str, list[str]] = field(default_factory=dict)
    collector: Collector = field(default_factory=Collector)
    incoming_trace: str = ""
    traced_task: str = ""
    traceresponse: str = ""
    hostile_answers: dict[str, httpx.Response] = field(default_factory=dict)
    raw_newline_answer: bytes = b""


@contextmanager
def collector_thread(collector: Collector) -> Iterator[str]:
    """The fake collector on a loop of its own: it answers while the test's loop is idle."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    done: asyncio.Future[None] | None = None
    url: list[str] = []

    async def serve() -> None:
        nonlocal done
        done = loop.create_future()
        async with collector_server(collector) as server:
            url.append(server.base_url)
            ready.set()
            await done

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield url[0]
    finally:
        loop.call_soon_threadsafe(lambda: done.set_result(None) if done else None)
        thread.join(10)
        loop.close()


def role_process(
    command: str, home: Path, env: dict[str, str], *args: str
) -> subprocess.Popen[bytes]:
    log = (home / f"{command}.log").open("wb")
    argv = [sys.executable, "-m", "agenttasks.cli", "--log-level", "DEBUG", command, *args]
    return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    for process in processes.values():
        process.terminate()
    for process in processes.values():
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def raw_request(port: int, header_line: bytes) -> bytes:
    """A create sent byte for byte (httpx refuses to send a newline inside a header)."""
    body = json.dumps(BODY).encode()
    request = (
        b"POST " + TASKS.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Authorization: {ALICE['Authorization']}\r\n".encode()
        + b"Content-Type: application/json\r\n" + header_line + b"\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
    )  # fmt: skip
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


@pytest.fixture(scope="module")
async def run(
    postgres: EmbeddedPostgres,
    nats_passwords: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Run:
    home = tmp_path_factory.mktemp("logs_and_traces")
    database_url = create_database(postgres.url, f"logs_traces_{secrets.token_hex(4)}")
    nats = start_nats(home / "nats", port=free_port(), passwords=nats_passwords)
    result = Run()
    port = free_port()
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        with collector_thread(result.collector) as collector_url:
            base = {
                **os.environ,
                "AGENTTASKS_HOME": str(home),
                "AGENTTASKS_DATABASE_URL": database_url,
                "AGENTTASKS_JWT_SECRET": SECRET,
                "AGENTTASKS_LOG_FORMAT": "json",
                "AGENTTASKS_DATABASE_POOL_SIZE": "2",
                "PYTHONPATH": SOURCE,
            }
            base.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
            for command, role in ROLES.items():
                env = {**base, "AGENTTASKS_NATS_URL": nats.url_for(role)}
                if command in TRACED:
                    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector_url
                args = ["--port", str(port)] if command == "api" else []
                if command == "worker":
                    args = ["--engine", "instant"]
                processes[command] = role_process(command, home, env, *args)
            await _drive(result, f"http://127.0.0.1:{port}", port, home)
            stop(processes)
            # The exporters flush at exit; the collector has them once the processes are gone.
            await wait_until(
                lambda: {s.role for s in result.collector.spans} >= set(TRACED),
                10,
                explain=lambda: [(s.role, s.name) for s in result.collector.spans],
            )
    finally:
        stop(processes)
        nats.stop()
    for command in ROLES:
        result.logs[command] = (home / f"{command}.log").read_text().splitlines()
    return result


async def _drive(result: Run, url: str, port: int, home: Path) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def ready() -> bool:
            try:
                return (await client.get("/ready")).status_code == 200
            except httpx.TransportError:
                return False

        def logs() -> str:
            return "\n".join((home / f"{c}.log").read_text()[-1500:] for c in ROLES)

        await wait_until(ready, 60, every=0.1, explain=logs)
        result.incoming_trace = secrets.token_hex(16)
        incoming = f"00-{result.incoming_trace}-{secrets.token_hex(8)}-01"
        created = await client.post(TASKS, json=BODY, headers={**ALICE, "traceparent": incoming})
        assert created.status_code == 201, created.text
        result.traced_task = created.json()["id"]
        result.traceresponse = created.headers.get("traceresponse", "")

        async def completed() -> bool:
            answer = await client.get(f"{TASKS}{result.traced_task}/", headers=ALICE)
            return answer.json()["status"] == "completed"

        await wait_until(completed, 30, every=0.1, explain=logs)
        for name, value in HOSTILE.items():
            result.hostile_answers[name] = await client.post(
                TASKS, json=BODY, headers={**ALICE, "traceparent": value}
            )
    result.raw_newline_answer = await asyncio.to_thread(
        raw_request, port, b"traceparent: 00-" + b"ab" * 16 + b"\nX-Injected: yes-" + b"cd" * 8
    )


def parsed(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]


def test_every_line_of_every_role_is_json_naming_its_role(run: Run) -> None:
    for command, role in ROLES.items():
        assert run.logs[command], f"{command} wrote no log line"
        for line in run.logs[command]:
            try:
                fields = json.loads(line)
            except ValueError:
                pytest.fail(f"{command}: not a JSON line: {line[:300]!r}")
            assert fields["role"] == role, line
            assert {"time", "level", "logger", "message"} <= set(fields), line


def test_one_tasks_lines_share_the_callers_trace_across_every_role(run: Run) -> None:
    roles_seen = set()
    for command, role in ROLES.items():
        for fields in parsed(run.logs[command]):
            if fields.get("task_id") == run.traced_task:
                roles_seen.add(role)
                assert fields.get("trace_id") == run.incoming_trace, fields
    assert roles_seen == set(ROLES.values())
    assert run.traceresponse.split("-")[1] == run.incoming_trace


def test_the_collector_receives_spans_of_the_one_trace_from_several_processes(run: Run) -> None:
    spans = [s for s in run.collector.spans if s.trace_id == run.incoming_trace]
    by_role = {s.role for s in spans}
    assert by_role == set(TRACED)
    assert len({s.instance for s in spans}) >= 2
    names = {s.name for s in spans}
    assert "worker attempt" in names
    assert any(s.role == "api" and s.name.startswith("POST") for s in spans), names
    attempt = next(s for s in spans if s.name == "worker attempt")
    # Its parent is the stored event's span (the API's), relayed unchanged in the NATS header.
    assert attempt.parent_span_id in {s.span_id for s in spans if s.role == "api"}
    assert run.collector.refused == 0


def test_a_hostile_traceparent_is_replaced_never_echoed(run: Run) -> None:
    everything = "\n".join(line for lines in run.logs.values() for line in lines)
    for name, answer in run.hostile_answers.items():
        value = HOSTILE[name]
        assert answer.status_code == 201, (name, answer.text)
        fresh = answer.headers["traceresponse"]
        assert fresh != value, name
        assert value[3:35].lower() not in fresh, name
        assert value not in everything, name
        assert value not in answer.text, name
    status = run.raw_newline_answer.split(b"\r\n", 1)[0]
    assert b" 500 " not in status
    assert b"X-Injected" not in run.raw_newline_answer
    assert b"ab" * 16 not in run.raw_newline_answer
