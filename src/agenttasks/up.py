"""`agenttasks up`: embedded Postgres and NATS (unless configured), then every role as a child.

Ctrl-C (or SIGTERM) stops the roles first (SIGTERM, then SIGKILL after a bound), then the servers
this command started, and removes the runtime file, so nothing is left running and no role is
left reconnecting to a server that went first. An embedded server that dies meanwhile is
started again on its data, and the roles reconnect. A second `up` on the same data directory
finds every task again: the servers' data lives there.
"""

from __future__ import annotations

import http.client
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from agenttasks import runtime_file
from agenttasks.servers.nats import EmbeddedNats, start_nats
from agenttasks.servers.postgres import (
    EmbeddedPostgres,
    create_database,
    prefer_fast_recovery,
    start_postgres,
)
from agenttasks.servers.secrets import ROLES, load_or_create_secrets
from agenttasks.settings import Settings, SettingsError
from agenttasks.supervisor import Supervisor

log = logging.getLogger(__name__)

DATABASE = "agenttasks"
API_START_SECONDS = 60.0


# The NATS user each role connects as (nats.conf): the least it needs.
NATS_USERS = {
    "api": "api",
    "relay": "relay",
    "project": "projector",
    "deliver": "deliverer",  # webhooks: its own consumer, nothing of the workers'
    # Housekeeping (expiry, sweeps, purge, worker liveness): Postgres only. It opens no NATS
    # connection; should it ever, the read-only user is all it gets.
    "maintain": "reader",
    "worker": "worker",
}
# The light background roles: one process for them all (together.py) saves ~40 MB a process.
# The API and the worker keep their own: they do the work per request and per task.
TOGETHER = ("relay", "project", "deliver", "maintain")


def child_commands(
    *, worker: bool, log_level: str, together: bool = True
) -> list[tuple[tuple[str, ...], list[str]]]:
    """(roles, command line) of each child `up` runs."""
    groups: list[tuple[str, ...]] = [("api",)]
    groups += [TOGETHER] if together else [(role,) for role in TOGETHER]
    if worker:
        groups.append(("worker",))
    commands = []
    for roles in groups:
        args = [roles[0]] if len(roles) == 1 else ["run", ",".join(roles)]
        # The roles log at up's level: `up --log-level DEBUG` is how one follows a task.
        commands.append((roles, [*args, "--log-level", log_level]))
    return commands


def nats_env(roles: tuple[str, ...], role_urls: dict[str, str], nats_url: str) -> dict[str, str]:
    """The NATS URLs of a child running `roles`: each role connects as its own user."""
    users = [NATS_USERS[role] for role in roles]
    if len(users) == 1:
        return {"AGENTTASKS_NATS_URL": role_urls.get(users[0], nats_url)}
    env = {
        f"AGENTTASKS_NATS_{user.upper()}_URL": role_urls[user]
        for user in users
        if user in role_urls
    }
    # Anything of the process that asks for no role's URL gets the read-only user.
    env["AGENTTASKS_NATS_URL"] = role_urls.get("reader", nats_url)
    return env


def up(
    settings: Settings, *, worker: bool = True, log_level: str = "INFO", together: bool = True
) -> int:
    """Runs the whole service until interrupted; the roles log at `log_level` too."""
    home = settings.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    running = runtime_file.read(home)
    if running is not None and running.pid != os.getpid():
        raise SettingsError(f"agenttasks is already running on {home} (pid {running.pid})")
    _check_port_free(settings.host, settings.port, "API (--port)")
    secrets = load_or_create_secrets(home)
    jwt_secret = settings.jwt_secret or secrets.jwt_secret
    stopping = StopFlag()

    with ExitStack() as cleanup:
        servers: list[tuple[str, EmbeddedPostgres | EmbeddedNats]] = []
        database_url = settings.database_url
        if database_url is None:
            print(f"Starting PostgreSQL in {home / 'postgres'} ...", flush=True)
            postgres = start_postgres(home / "postgres")
            cleanup.callback(_timed, "PostgreSQL", postgres.stop)
            servers.append(("PostgreSQL", postgres))
            prefer_fast_recovery(postgres.url)
            database_url = create_database(postgres.url, DATABASE, exist_ok=True)
        role_urls = dict(settings.nats_role_urls)
        nats_url = settings.nats_url
        if nats_url is None:
            _check_port_free(settings.host, settings.nats_port, "NATS (--nats-port)")
            nats = start_nats(
                home / "nats",
                host=settings.host,
                port=settings.nats_port,
                passwords=secrets.nats_passwords,
            )
            cleanup.callback(_timed, "NATS", nats.stop)
            servers.append(("NATS", nats))
            nats_url = nats.url_for("api")
            role_urls = {role: nats.url_for(role) for role in ROLES}
        api_url = f"http://{settings.host}:{settings.port}"
        runtime = runtime_file.Runtime(os.getpid(), database_url, nats_url, role_urls, api_url)
        runtime_file.write(home, runtime)
        cleanup.callback(runtime_file.remove, home)

        supervisor = Supervisor()
        cleanup.callback(supervisor.stop)  # registered last, so it runs before the servers stop
        for name, server in servers:
            supervisor.watch(name, server)
        base = _child_env(settings, database_url, jwt_secret)
        children = child_commands(worker=worker, log_level=log_level, together=together)
        for index, (roles, args) in enumerate(children):
            env = {**base, **nats_env(roles, role_urls, nats_url)}
            supervisor.add(f"{'+'.join(roles)}-{index}", args, env)

        if not _wait_for_api(api_url, supervisor, stopping):
            return 1
        _print_banner(api_url, jwt_secret, role_urls.get("reader"), home, supervisor)
        print(_metrics_banner(settings, api_url, worker=worker, together=together), flush=True)
        while not stopping():
            supervisor.check()
            time.sleep(0.2)
        print("\nStopping ...", flush=True)
    print("Stopped.", flush=True)
    return 0


def _timed(name: str, stop: Callable[[], None]) -> None:
    began = time.monotonic()
    stop()
    log.info("%s stopped after %.1fs", name, time.monotonic() - began)


def _child_env(settings: Settings, database_url: str, jwt_secret: str) -> dict[str, str]:
    # Children get the whole environment (PATH, OPENAI_*, ...) plus what `up` decided.
    env = dict(os.environ)
    env.update(
        AGENTTASKS_HOME=str(settings.home.resolve()),
        AGENTTASKS_DATABASE_URL=database_url,
        AGENTTASKS_JWT_SECRET=jwt_secret,
        AGENTTASKS_HOST=settings.host,
        AGENTTASKS_PORT=str(settings.port),
    )
    return env


def _check_port_free(host: str, port: int, what: str) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise SettingsError(f"{host}:{port} is already in use; choose another {what}") from None


class StopFlag:
    """Set by SIGINT or SIGTERM; `up` checks it between supervision rounds."""

    def __init__(self) -> None:
        self.raised = False
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.raised = True

    def __call__(self) -> bool:
        return self.raised


def _wait_for_api(api_url: str, supervisor: Supervisor, stopping: StopFlag) -> bool:
    deadline = time.monotonic() + API_START_SECONDS
    while time.monotonic() < deadline and not stopping():
        supervisor.check()
        if _healthy(api_url):
            return True
        time.sleep(0.05)  # a refused connect costs nothing; the banner comes right after
    if not stopping():
        print(f"The API did not answer on {api_url} within {API_START_SECONDS:.0f}s; stopping.")
    return False


def _healthy(api_url: str) -> bool:
    # http.client rather than httpx: `up` imports nothing it waits with (httpx is ~0.1 s of
    # imports before PostgreSQL starts, and ~15 MB held while `up` runs).
    address = urlsplit(api_url)
    connection = http.client.HTTPConnection(
        address.hostname or "127.0.0.1", address.port, timeout=1
    )
    try:
        connection.request("GET", "/health")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _metrics_banner(
    settings: Settings, api_url: str, *, worker: bool = True, together: bool = True
) -> str:
    """Where each role's /metrics is (docs/operations.md, "Metrics")."""
    from agenttasks.metrics.exposition import OFFSETS, metrics_address

    lines = [f"  Metrics:  {api_url}/metrics (API; system-wide figures)"]
    for role in OFFSETS:
        address = metrics_address(settings, role)
        if role == "worker" and not worker:
            continue  # --no-worker: nothing listens there (a worker started by hand would)
        if together and role in TOGETHER[1:]:
            continue  # served with the first of them, by their one process
        what = f"{', '.join(TOGETHER)}: one process" if together and role in TOGETHER else role
        if address is not None:
            lines.append(f"            http://{address[0]}:{address[1]}/metrics ({what})")
    if settings.metrics_port == 0:
        lines.append("            other roles: off (AGENTTASKS_METRICS_PORT=9470 turns them on)")
    return "\n".join(lines) + "\n"


def _print_banner(
    api_url: str, jwt_secret: str, reader_url: str | None, home: Path, supervisor: Supervisor
) -> None:
    # Imported here, once the API answers: the auth module brings Litestar and the event store
    # (~1-2 s of imports here) that `up` needs for nothing else, and that would delay every
    # server and role start if it were imported first.
    from agenttasks.api.auth import mint_token

    token = mint_token(jwt_secret, "local", admin=True, ttl=24 * 3600)
    lines = [
        "",
        "agenttasks is running.",
        f"  API:      {api_url}/api/v1/utils/ai-tasks/   (OpenAPI: {api_url}/schema/openapi.json)",
        f"  Token:    {token}",
        "            (user `local`, admin, valid 24h; more: agenttasks token USER)",
        f"  Browser:  {api_url}/#token={token}   (the dashboard, signed in as `local`)",
    ]
    if reader_url:
        lines.append(f"  NATS:     {reader_url}   (read-only subscriber)")
    children = ", ".join(
        f"{child.name} ({child.process.pid})" for child in supervisor.children if child.process
    )
    lines += [f"  Roles:    {children}", f"  Data:     {home}", "Press Ctrl-C to stop.", ""]
    print("\n".join(lines), flush=True)
