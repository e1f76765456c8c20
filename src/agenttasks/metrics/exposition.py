"""`/metrics` of the roles other than the API: a small HTTP server in a thread of the process.

`agenttasks up` runs every role on one host, so each role listens on the base port
(`AGENTTASKS_METRICS_PORT`) plus a fixed offset; 0 turns them off. They bind
`AGENTTASKS_METRICS_HOST` (127.0.0.1 by default) and ask for no credentials: what they show is
per process and holds no user data, and a port the operator keeps private is the usual answer
(docs/operations.md, "Metrics"). A port already taken is logged and the role runs on without
metrics: a second worker on one host must not die over its metrics port.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import start_http_server

from agenttasks.metrics.process import ROLE
from agenttasks.settings import Settings

log = logging.getLogger(__name__)

OFFSETS = {"relay": 0, "project": 1, "worker": 2, "deliver": 3, "maintain": 4}


def metrics_address(settings: Settings, role: str) -> tuple[str, int] | None:
    """(host, port) of `role`'s /metrics, or None when the metrics ports are off."""
    if settings.metrics_port == 0:
        return None
    return settings.metrics_host, settings.metrics_port + OFFSETS[role]


@contextmanager
def serving(settings: Settings, role: str) -> Iterator[tuple[str, int] | None]:
    """Serves this process's metrics while the block runs; yields the address (None: off)."""
    ROLE.labels(role).set(1)
    address = metrics_address(settings, role)
    if address is None:
        yield None
        return
    try:
        server, thread = start_http_server(address[1], addr=address[0])
    except OSError as error:
        log.error("metrics: cannot listen on %s:%s (%s); going on without", *address, error)
        yield None
        return
    port = server.server_address[1]
    log.info("metrics of %s on http://%s:%s/metrics", role, address[0], port)
    try:
        yield address[0], int(port)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
