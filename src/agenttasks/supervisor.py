"""Runs the service's processes for `agenttasks up`, restarts one that dies, stops them all.

Each child is an `agenttasks` command: a role (api, worker), or several light ones sharing one
process (`agenttasks run relay,project,deliver,maintain`), running the code of a multi-machine
deployment, so `up` exercises the same code paths and uses both cores. The
embedded servers are watched too: one that dies is started again on its data (`watch`).
Children run in sessions of their own, so Ctrl-C reaches `up` alone and it decides the order.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

RESTART_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0)
SERVER_BACKOFF_SECONDS = (0.0, 0.5, 1.0, 2.0, 5.0)  # every role waits on a server: be quick
STOP_SECONDS = 8.0  # a role that has not stopped after SIGTERM by then is killed


@dataclass
class Child:
    """One supervised process and how to start it again."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path | None = None  # its stdout and stderr, appended (None: up's own)
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)

    def start(self) -> None:
        """Starts (or restarts) the process."""
        with contextlib.ExitStack() as files:
            output = None if self.log is None else files.enter_context(self.log.open("ab"))
            self.process = subprocess.Popen(  # noqa: S603 - our own argv
                self.argv,
                env=self.env,
                start_new_session=True,
                stdout=output,
                stderr=None if output is None else subprocess.STDOUT,
            )
        self.started_at = time.monotonic()
        log.info("started %s (pid %s)", self.name, self.process.pid)

    @property
    def alive(self) -> bool:
        """Whether the process is running."""
        return self.process is not None and self.process.poll() is None


class Restartable(Protocol):
    """An embedded server (servers/): whether it runs, and how to start it again on its data."""

    @property
    def alive(self) -> bool: ...

    def restart(self) -> None: ...


@dataclass
class Server:
    """An embedded server `up` started, and the state of its restarts."""

    name: str
    server: Restartable
    failures: int = 0
    next_start: float = 0.0

    def check(self, now: float) -> None:
        """Restarts the server if it died, backing off while restarts keep failing."""
        if self.server.alive:
            self.failures = 0
            return
        if self.next_start == 0.0:
            delay = SERVER_BACKOFF_SECONDS[min(self.failures, len(SERVER_BACKOFF_SECONDS) - 1)]
            log.warning("%s is not running; restarting it in %.1fs", self.name, delay)
            self.next_start = now + delay
        if now < self.next_start:
            return
        self.next_start = 0.0
        try:
            self.server.restart()
        except Exception as error:  # its log says why; try again after the backoff
            self.failures += 1
            log.error("%s did not restart: %s", self.name, error)
        else:
            log.warning("%s restarted", self.name)


class Supervisor:
    """Starts children, restarts crashed ones with backoff, and stops them all on request."""

    def __init__(self) -> None:
        self.children: list[Child] = []
        self.servers: list[Server] = []

    def watch(self, name: str, server: Restartable) -> None:
        """Watches an embedded server; `check` restarts it when it has died."""
        self.servers.append(Server(name, server))

    def add(
        self, name: str, args: Sequence[str], env: Mapping[str, str], *, log: Path | None = None
    ) -> Child:
        """Registers and starts `agenttasks <args>` as a child (its output to `log` if given)."""
        argv = [sys.executable, "-m", "agenttasks.cli", *args]
        child = Child(name, argv, dict(env), log)
        self.children.append(child)
        child.start()
        return child

    def check(self) -> None:
        """Restarts any server or child that exited, after a backoff that grows with crashes."""
        now = time.monotonic()
        for server in self.servers:
            server.check(now)
        now = time.monotonic()  # a restart above may have taken a while
        for child in self.children:
            if child.alive or child.process is None:
                continue
            if child.next_start == 0.0:
                if now - child.started_at > 30:  # it ran a while: a fresh crash, not a loop
                    child.restarts = 0
                delay = RESTART_BACKOFF_SECONDS[
                    min(child.restarts, len(RESTART_BACKOFF_SECONDS) - 1)
                ]
                code = child.process.returncode
                log.warning("%s exited with %s; restarting in %.1fs", child.name, code, delay)
                child.next_start = now + delay
            elif now >= child.next_start:
                child.restarts += 1
                child.next_start = 0.0
                child.start()

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """Asks every child to stop (SIGTERM), then kills what is left after `timeout`."""
        running = [c for c in self.children if c.alive and c.process is not None]
        for child in running:
            assert child.process is not None
            child.process.send_signal(signal.SIGTERM)
        began = time.monotonic()
        while running and time.monotonic() < began + timeout:
            for child in [c for c in running if not c.alive]:
                running.remove(child)
                log.info("%s stopped after %.1fs", child.name, time.monotonic() - began)
            time.sleep(0.02)  # polling a handful of children; each stop is logged as it happens
        for child in running:
            assert child.process is not None
            log.warning("%s did not stop in %.0fs; killing it", child.name, timeout)
            child.process.kill()
            child.process.wait()
