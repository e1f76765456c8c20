"""The compose topology from wheels: the 3-node NATS JetStream cluster of deploy/nats/cluster.conf
on loopback and the roles as plain processes configured only through environment. Everything
started is stopped by its PID."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

from agenttasks.servers.nats import nats_server_binary, password_env
from tests.conftest import free_port
from tests.deployment.cluster import CLUSTER_CONF, NATS_CONF, NODES, loopback_config
from tests.waiting import block_until

HOST = "127.0.0.1"


@dataclass
class Process:
    """A child process with its log file; `kill` is SIGKILL, `stop` SIGTERM then SIGKILL."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        finally:
            log.close()  # the child holds its own descriptor
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait(self, timeout: float) -> int:
        """Its exit status, once it has exited (within `timeout` seconds)."""
        assert self.process is not None
        return self.process.wait(timeout)

    def kill(self) -> None:
        """kill -9, and reap it."""
        if self.alive:
            os.kill(self.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


@dataclass
class NatsNode:
    """One node of the cluster: client, route and monitoring ports, its own store."""

    name: str
    port: int
    route_port: int
    http_port: int
    directory: Path
    process: Process | None = None

    def url_for(self, role: str, password: str) -> str:
        return f"nats://{role}:{quote(password, safe='')}@{HOST}:{self.port}"

    def healthy(self) -> bool:
        """JetStream on this node is up and current with the cluster (/healthz)."""
        try:
            return (
                httpx.get(f"http://{HOST}:{self.http_port}/healthz", timeout=1).status_code == 200
            )
        except httpx.HTTPError:
            return False

    def jsz(self) -> dict[str, object]:
        response = httpx.get(
            f"http://{HOST}:{self.http_port}/jsz", params={"accounts": "true", "streams": "true"}
        )
        result: dict[str, object] = response.json()
        return result


@dataclass
class NatsCluster:
    nodes: list[NatsNode]
    passwords: dict[str, str]
    processes: list[Process] = field(default_factory=list)

    def url_for(self, role: str, nodes: list[NatsNode] | None = None) -> str:
        """Every node's URL with `role`'s credentials, comma-separated, as compose passes it."""
        return ",".join(n.url_for(role, self.passwords[role]) for n in nodes or self.nodes)

    def stream_placement(self, stream: str) -> tuple[str | None, int]:
        """(the node leading `stream`, how many nodes hold it), as a live node reports it."""
        for node in self.nodes:
            if node.process is None or not node.process.alive:
                continue
            try:
                info = node.jsz()
            except (httpx.HTTPError, ValueError):
                continue
            for account in info.get("account_details") or []:  # type: ignore[attr-defined]
                for detail in account.get("stream_detail") or []:
                    if detail.get("name") == stream:
                        cluster = detail.get("cluster") or {}
                        leader = cluster.get("leader")
                        held = len(cluster.get("replicas") or []) + (1 if leader else 0)
                        return (str(leader) if leader else None), held
        return None, 0


def start_nats_cluster(directory: Path, passwords: dict[str, str]) -> NatsCluster:
    """The three nodes of deploy/nats/cluster.conf (as compose mounts it, only the addresses
    moved to loopback ports); `wait_healthy` waits for them."""
    nodes = [
        NatsNode(name, free_port(), free_port(), free_port(), directory / name) for name in NODES
    ]
    ports = {n.name: n.port for n in nodes}
    routes = {n.name: n.route_port for n in nodes}
    cluster = NatsCluster(nodes, passwords)
    for node in nodes:
        node.directory.mkdir(parents=True, exist_ok=True)
        shutil.copy(NATS_CONF, node.directory / "nats.conf")
        config = node.directory / "cluster.conf"
        config.write_text(
            loopback_config(
                CLUSTER_CONF.read_text(), ports, routes, node.http_port,
                node.directory / "jetstream", node.name,
            )
        )  # fmt: skip
        env = {
            "PATH": os.environ.get("PATH", ""),
            "NATS_SERVER_NAME": node.name,
            **password_env(passwords),
        }
        node.process = Process(
            node.name, [nats_server_binary(), "-c", str(config)], env,
            node.directory / "nats-server.log",
        ).start()  # fmt: skip
        cluster.processes.append(node.process)
    return cluster


def wait_healthy(cluster: NatsCluster, within: float = 30.0) -> None:
    """Blocks until every live node reports healthy (a JetStream meta leader is elected)."""

    def every_live_node_healthy() -> bool:
        if all(n.healthy() for n in cluster.nodes if n.process and n.process.alive):
            return True
        for node in cluster.nodes:  # one that exited will never be healthy: fail with its log
            if node.process is not None and not node.process.alive:
                raise AssertionError(f"{node.name} exited:\n{node.process.log()[-2000:]}")
        return False

    def unhealthy() -> str:
        names = [n.name for n in cluster.nodes if n.process and n.process.alive and not n.healthy()]
        return f"the NATS cluster is not healthy: {names}"

    block_until(every_live_node_healthy, within, every=0.05, explain=unhealthy)


def role_process(name: str, args: list[str], env: dict[str, str], directory: Path) -> Process:
    """`python -m agenttasks.cli <args>` with exactly `env` (plus what Python itself needs)."""
    directory.mkdir(parents=True, exist_ok=True)
    return Process(
        name, [sys.executable, "-m", "agenttasks.cli", *args], child_env(env),
        directory / f"{name}.log",
    )  # fmt: skip


def child_env(env: dict[str, str]) -> dict[str, str]:
    """This environment without any AGENTTASKS_ or OPENAI_ variable, plus `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTTASKS_", "OPENAI_"))}
    return {**base, **env}


def stop_all(processes: list[Process]) -> None:
    """SIGTERM to every live process at once, then waits for each (SIGKILL after 10 s)."""
    for process in processes:
        if process.alive:
            assert process.process is not None
            process.process.send_signal(signal.SIGTERM)
    for process in processes:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            process.stop()
