"""A 3-node NATS JetStream cluster on loopback, from deploy/nats/cluster.conf as compose mounts it.

Only the addresses change (ports instead of the nats-N host names, a temporary store), so what
runs here is the checked-in configuration: nats.conf's users included, the cluster block, the
overrides after the include.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from agenttasks.servers.nats import nats_server_binary, password_env
from tests.conftest import free_port
from tests.waiting import block_until

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_CONF = ROOT / "deploy" / "nats" / "cluster.conf"
NATS_CONF = ROOT / "nats.conf"
NODES = ("nats-1", "nats-2", "nats-3")


@dataclass
class Cluster:
    """The running nodes: their client ports and the role passwords."""

    ports: dict[str, int]
    http_ports: dict[str, int]
    passwords: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]]

    def url_for(self, role: str) -> str:
        """Every node's URL with `role`'s credentials, comma-separated (AGENTTASKS_NATS_URL)."""
        password = quote(self.passwords[role], safe="")
        return ",".join(f"nats://{role}:{password}@127.0.0.1:{p}" for p in self.ports.values())


def loopback_config(
    text: str, ports: dict[str, int], cluster: dict[str, int], http: int, store: Path, node: str
) -> str:
    for name in NODES:
        text = text.replace(f"{name}:6222", f"127.0.0.1:{cluster[name]}")
    replaced = (
        text.replace("port: 4222", f"port: {ports[node]}")
        .replace("http_port: 8222", f"http_port: {http}")
        .replace('"0.0.0.0:6222"', f'"127.0.0.1:{cluster[node]}"')
        .replace('"/data/jetstream"', f'"{store}"')
    )
    assert replaced != text
    return replaced


def healthy(http_port: int) -> bool:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{http_port}/healthz?js-enabled-only=true", timeout=1
        ) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@contextmanager
def nats_cluster(directory: Path, passwords: dict[str, str]) -> Iterator[Cluster]:
    """Starts the three nodes, waits until each reports JetStream healthy; stops them after."""
    ports = {name: free_port() for name in NODES}
    routes = {name: free_port() for name in NODES}
    http = {name: free_port() for name in NODES}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in NODES:
            home = directory / name
            home.mkdir(parents=True)
            shutil.copy(NATS_CONF, home / "nats.conf")
            (home / "cluster.conf").write_text(
                loopback_config(
                    CLUSTER_CONF.read_text(), ports, routes, http[name], home / "jetstream", name
                )
            )
            env = {
                "PATH": os.environ.get("PATH", ""),
                "NATS_SERVER_NAME": name,
                **password_env(passwords),
            }
            processes[name] = subprocess.Popen(
                [nats_server_binary(), "-c", str(home / "cluster.conf"), "-l", str(home / "log")],
                env=env,
                stdin=subprocess.DEVNULL,
            )

        def all_healthy() -> bool:
            for name in NODES:  # a node that exited never gets healthy: fail with its log
                assert processes[name].poll() is None, (directory / name / "log").read_text()
            return all(healthy(http[name]) for name in NODES)

        def unhealthy() -> list[str]:
            return [name for name in NODES if not healthy(http[name])]

        block_until(all_healthy, 30, every=0.05, explain=unhealthy)
        yield Cluster(ports, http, passwords, processes)
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
