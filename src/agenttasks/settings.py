"""Configuration, read from the environment once into one typed object.

Nothing else in the code reads `os.environ`; everything that needs a setting is handed this
object (or the part of it it needs) by the composition root.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict


class SettingsError(ValueError):
    """A setting with a value that cannot work; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Everything agenttasks can be configured with. Defaults run the embedded stack."""

    home: Path = Path(".agenttasks")
    database_url: str | None = None  # None: `agenttasks up` starts embedded Postgres
    nats_url: str | None = None  # None: `agenttasks up` starts embedded NATS
    jwt_secret: str | None = None  # None: `agenttasks up` generates one in `home`
    host: str = "127.0.0.1"
    port: int = 8000
    nats_port: int = 4222
    # Role -> NATS URL with that role's credentials, for servers that require them.
    nats_role_urls: Mapping[str, str] = field(default_factory=dict)
    # Workers. With no OpenAI key the built-in offline engine does the work.
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None  # any OpenAI-compatible server (Ollama, vLLM, ...)
    model: str = "gpt-4o-mini"
    llm_timeout: int = 120
    fetch_allowed_hosts: frozenset[str] = frozenset()  # hosts exempt from the SSRF guard

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Reads the AGENTTASKS_* variables; raises SettingsError on bad values."""
        env = os.environ if environ is None else environ
        base = cls()
        values: dict[str, Any] = {}
        if home := env.get("AGENTTASKS_HOME"):
            values["home"] = Path(home)
        for key, name in (
            ("database_url", "AGENTTASKS_DATABASE_URL"),
            ("nats_url", "AGENTTASKS_NATS_URL"),
            ("jwt_secret", "AGENTTASKS_JWT_SECRET"),
        ):
            if value := env.get(name, "").strip():
                values[key] = value
        if host := env.get("AGENTTASKS_HOST", "").strip():
            values["host"] = host
        values["port"] = _int(env, "AGENTTASKS_PORT", base.port, 1, 65535)
        values["nats_port"] = _int(env, "AGENTTASKS_NATS_PORT", base.nats_port, 1, 65535)
        if key := env.get("OPENAI_API_KEY", "").strip():
            values["openai_api_key"] = key
        if base_url := env.get("OPENAI_BASE_URL", "").strip():
            if not base_url.startswith(("http://", "https://")):
                raise SettingsError(f"OPENAI_BASE_URL must be an http(s) URL, not {base_url!r}")
            values["openai_base_url"] = base_url
        if model := env.get("AGENTTASKS_MODEL", "").strip():
            values["model"] = model
        values["llm_timeout"] = _int(env, "AGENTTASKS_LLM_TIMEOUT", base.llm_timeout, 1, 3600)
        hosts = env.get("AGENTTASKS_FETCH_ALLOWED_HOSTS", "")
        values["fetch_allowed_hosts"] = frozenset(
            h.strip().lower() for h in hosts.split(",") if h.strip()
        )
        settings = cls(**values)
        if settings.jwt_secret is not None and len(settings.jwt_secret.encode()) < 32:
            raise SettingsError("AGENTTASKS_JWT_SECRET must be at least 32 bytes long")
        return settings

    def with_(self, **changes: Any) -> Settings:
        """A copy with some values changed (the composition root fills in embedded servers)."""
        return replace(self, **changes)

    def nats_url_for(self, role: str) -> str:
        """The NATS URL a process of `role` (relay, projector, worker, api, reader) connects to."""
        url = self.nats_role_urls.get(role) or self.nats_url
        if url is None:
            raise SettingsError("no NATS server configured (AGENTTASKS_NATS_URL)")
        return url

    def eventsourcing_env(self) -> dict[str, str]:
        """The eventsourcing library's settings for our Postgres event store."""
        if self.database_url is None:
            raise SettingsError("no Postgres configured (AGENTTASKS_DATABASE_URL)")
        try:
            params = conninfo_to_dict(self.database_url)
        except Exception as error:
            raise SettingsError(f"AGENTTASKS_DATABASE_URL is not a valid URL: {error}") from None
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": str(params.get("dbname") or "postgres"),
            "POSTGRES_HOST": str(params.get("host") or "localhost"),
            "POSTGRES_PORT": str(params.get("port") or "5432"),
            "POSTGRES_USER": str(params.get("user") or "postgres"),
            "POSTGRES_PASSWORD": str(params.get("password") or ""),
            "POSTGRES_POOL_SIZE": "8",
            "POSTGRES_MAX_OVERFLOW": "8",
            "CREATE_TABLE": "y",
        }


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, not {value}")
    return value
