"""Where a running `agenttasks up` tells other commands how to reach its servers.

`up` writes `<data dir>/runtime.json` (mode 0600: it holds credentials) once its servers are
ready and removes it when it stops, so `agenttasks token`, `replay` and `audit` given the same
data directory talk to the same Postgres and NATS without any setting.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

FILE_NAME = "runtime.json"


@dataclass(frozen=True)
class Runtime:
    """The servers of a running `up`."""

    pid: int
    database_url: str
    nats_url: str
    nats_role_urls: dict[str, str] = field(default_factory=dict)
    api_url: str = ""


def write(home: Path, runtime: Runtime) -> None:
    """Records `runtime` in `home`, readable only by its owner."""
    path = home / FILE_NAME
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(asdict(runtime), file, indent=2)
    temporary.replace(path)


def read(home: Path) -> Runtime | None:
    """The runtime of a live `up` on `home`, or None (none recorded, or its process is gone)."""
    path = home / FILE_NAME
    try:
        runtime = Runtime(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    try:
        os.kill(runtime.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, owned by someone else
    return runtime


def remove(home: Path) -> None:
    """Forgets the runtime (when `up` stops)."""
    (home / FILE_NAME).unlink(missing_ok=True)
