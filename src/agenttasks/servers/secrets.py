"""Secrets `agenttasks up` generates once per data directory and keeps (file mode 0600)."""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

ROLES = ("relay", "projector", "worker", "deliverer", "api", "reader")
# nats-server parses an environment variable's value as a config value: "0e5..." would be a
# number and "true" a boolean. A letter then hex digits always stays a plain string.
_PASSWORD = re.compile(r"^p[0-9a-f]{32,}$")
FILE_NAME = "secrets.json"


@dataclass(frozen=True)
class Secrets:
    """The JWT signing secret and one NATS password per role."""

    jwt_secret: str
    nats_passwords: dict[str, str]


def load_secrets(data_dir: Path) -> Secrets | None:
    """The secrets kept in `data_dir`, or None when there are none yet."""
    try:
        stored = json.loads((data_dir / FILE_NAME).read_text())
        return Secrets(stored["jwt_secret"], dict(stored["nats_passwords"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_or_create_secrets(data_dir: Path) -> Secrets:
    """The kept secrets, generating and saving any that are missing."""
    found = load_secrets(data_dir)
    passwords = dict(found.nats_passwords) if found else {}
    for role in ROLES:
        if not _PASSWORD.match(passwords.get(role, "")):
            passwords[role] = "p" + secrets.token_hex(24)
    kept = Secrets(found.jwt_secret if found else secrets.token_hex(32), passwords)
    if kept != found:
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / FILE_NAME
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump({"jwt_secret": kept.jwt_secret, "nats_passwords": passwords}, file, indent=2)
    return kept
