"""`agenttasks up` as a user runs it: a subprocess, real HTTP, Ctrl-C, and a second start."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import free_port
from tests.e2e.up_output import banner_shown
from tests.waiting import block_for_value, block_until

pytestmark = pytest.mark.e2e


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTTASKS_", "OPENAI_"))}
    return subprocess.run(
        [sys.executable, "-m", "agenttasks.cli", "--data-dir", str(home), *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


@dataclass
class Up:
    """A running `agenttasks up`: its API URL, process, data directory and log."""

    url: str
    process: subprocess.Popen[bytes]
    home: Path
    log: Path
    stop_seconds: float = 0.0

    @property
    def output(self) -> str:
        return self.log.read_text()

    def postmaster(self) -> psutil.Process:
        """The embedded Postgres server (pg_ctl detaches it, so it is no child of `up`)."""
        pid = int((self.home / "postgres" / "postmaster.pid").read_text().split()[0])
        return psutil.Process(pid)

    def nats_server(self) -> psutil.Process:
        found = [
            c for c in psutil.Process(self.process.pid).children() if c.name() == "nats-server"
        ]
        assert len(found) == 1, found
        return found[0]

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


@contextmanager
def agenttasks_up(home: Path, port: int, nats_port: int) -> Iterator[Up]:
    """Runs `agenttasks up`; yields it; Ctrl-C at the end as a terminal sends it, checked clean.

    `up` runs in a session of its own and the Ctrl-C goes to its whole process group, as the
    terminal's does: whatever stays in that group (a server, a role) receives it directly.
    """
    log = home.parent / f"up-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTTASKS_", "OPENAI_"))}
    # What a terminal shows (its output here is a file, where the default would be JSON lines).
    env["AGENTTASKS_LOG_FORMAT"] = "text"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "agenttasks.cli", "--data-dir", str(home), "up",
             "--port", str(port), "--nats-port", str(nats_port)],
            stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    up = Up(f"http://127.0.0.1:{port}", process, home, log)
    descendants: list[psutil.Process] = []
    alive: list[psutil.Process] = []
    try:
        block_until(lambda: banner_shown(process, log), 60, every=0.1, explain=log.read_text)
        yield up
    finally:
        if process.poll() is None:
            # Everything running now (servers restarted meanwhile included) must end with `up`.
            descendants = psutil.Process(process.pid).children(recursive=True)
            with contextlib.suppress(OSError, ValueError, psutil.Error):
                descendants.append(up.postmaster())
            began = time.monotonic()
            os.killpg(process.pid, signal.SIGINT)
            process.wait(30)  # a hang, not a slow stop: the time is printed below
            up.stop_seconds = time.monotonic() - began
            print(f"\nagenttasks up: Ctrl-C to exit took {up.stop_seconds:.2f}s")
        _, alive = psutil.wait_procs(descendants, timeout=10)
        for leftover in alive:
            leftover.kill()
    assert process.returncode == 0, log.read_text()
    assert alive == [], f"left running after Ctrl-C: {alive}"
    assert not (home / "postgres" / "postmaster.pid").exists(), "Postgres still running"
    after_stop = log.read_text().partition("Stopping ...")[2]
    noisy = [line for line in after_stop.splitlines() if RECONNECT_NOISE.search(line)]
    assert noisy == [], "reconnect warnings while stopping:\n" + "\n".join(noisy)


# What a role says when a server went away under it (ours, nats-py's, psycopg's words).
RECONNECT_NOISE = re.compile(
    r"lost \(|disconnected|reconnect|retrying|unexpected EOF|connection refused|connect call failed"
    r"|connection failed|Traceback",
    re.IGNORECASE,
)


def token_from_banner(output: str) -> str:
    return next(
        line.split()[1] for line in output.splitlines() if line.strip().startswith("Token:")
    )


def test_up_serves_the_api_a_second_up_finds_every_task_again_and_ctrl_c_stops_it_in_order(
    tmp_path: Path,
) -> None:
    # One test for both: each start of `up` costs seconds, and the second one's Ctrl-C is the
    # one checked in order (it was test_ctrl_c_stops_the_roles_then_the_servers_...).
    home = tmp_path / "home"
    port, nats_port = free_port(), free_port()
    with agenttasks_up(home, port, nats_port) as up:
        url, output = up.url, up.output
        assert "nats://reader:" in output
        headers = {"Authorization": f"Bearer {token_from_banner(output)}"}
        created = httpx.post(
            f"{url}/api/v1/utils/ai-tasks/",
            json={"title": "Kept", "task_type": "summary", "task_config": {"content": "Hi."}},
            headers=headers,
        )
        assert created.status_code == 201, created.text
        task_id = created.json()["id"]
        assert httpx.get(f"{url}/ready").json()["ready"] is True
        # The worker `up` started runs it, on the offline engine (no OpenAI key here).
        task = block_for_value(
            lambda: httpx.get(f"{url}/api/v1/utils/ai-tasks/{task_id}/", headers=headers).json(),
            lambda task: task["status"] == "completed",
            60,
            every=0.1,
        )
        assert task["result_data"]["engine"] == "offline"
        assert task["result_data"]["summary"] == "Hi."

        bob = cli(home, "token", "bob").stdout.strip()
        bobs = httpx.get(
            f"{url}/api/v1/utils/ai-tasks/", headers={"Authorization": f"Bearer {bob}"}
        )
        assert bobs.json()["count"] == 0
        audit = cli(home, "audit", task_id)
        assert audit.returncode == 0, audit.stderr
        assert "created" in audit.stdout
        assert "Kept" in audit.stdout
    assert not (home / "runtime.json").exists()

    with agenttasks_up(home, port, nats_port) as up:
        url = up.url
        headers = {"Authorization": f"Bearer {token_from_banner(up.output)}"}
        again = httpx.get(f"{url}/api/v1/utils/ai-tasks/{task_id}/", headers=headers)
        assert again.status_code == 200
        assert again.json()["title"] == "Kept"
        verified = cli(home, "replay", "tasks", "--verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "tasks: verified" in verified.stdout
        rebuilt = cli(home, "replay", "all")
        assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
        assert "rebuilt and switched" in rebuilt.stdout
        assert (
            httpx.get(f"{url}/api/v1/utils/ai-tasks/{task_id}/", headers=headers).status_code == 200
        )
        # A task created just before Ctrl-C: the roles stop with work in flight.
        busy = httpx.post(
            f"{url}/api/v1/utils/ai-tasks/",
            json={"title": "Busy", "task_type": "summary", "task_config": {"content": "Hi."}},
            headers=headers,
        )
        assert busy.status_code == 201, busy.text
        roles = len(psutil.Process(up.process.pid).children()) - 1  # all but nats-server
    # agenttasks_up checked: exit code 0, every child and the postmaster gone, no reconnect noise.
    stopping = up.output.partition("Stopping ...")[2].splitlines()
    order = [line.split(": ", 1)[1].split()[0] for line in stopping if "stopped after" in line]
    assert len(order) == roles + 2, stopping
    assert order[-2:] == ["NATS", "PostgreSQL"], order  # the servers last, NATS first of them
    assert up.stop_seconds < 30


def test_the_cli_says_plainly_what_is_wrong(tmp_path: Path) -> None:
    outcomes = {
        "no JWT secret": cli(tmp_path, "token", "alice"),
        "no database": cli(tmp_path, "audit", "not-a-uuid"),
        "must be between 1 and 65535": cli(tmp_path, "up", "--port", "99999"),
        "unknown task type(s) poems": cli(tmp_path, "worker", "--types", "summary,poems"),
    }
    for message, outcome in outcomes.items():
        assert outcome.returncode == 2, outcome.stderr
        assert message in outcome.stderr
        assert "Traceback" not in outcome.stderr
