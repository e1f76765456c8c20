"""Configuration, read from the environment once into one typed object.

Nothing else in the code reads `os.environ`; everything that needs a setting is handed this
object (or the part of it it needs) by the composition root.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from psycopg.conninfo import conninfo_to_dict

from agenttasks.application.price_file import PriceFile, PriceFileError, read_price_file
from agenttasks.domain.budget import MAX_BUDGET_USD, parse_budget
from agenttasks.domain.limits import MAX_ACTIVE, parse_rate
from agenttasks.durations import format_duration, parse_duration

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Caps = TypeVar("Caps", bound="DataclassInstance")


# The NATS users of nats.conf, one per role (servers/secrets.py generates their passwords).
NATS_ROLES = ("relay", "projector", "worker", "deliverer", "api", "reader")


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
    # Copies of the event stream JetStream keeps: 1 on one server, 3 on a 3-node cluster (a
    # node may die without losing an event). More replicas than nodes: the stream cannot start.
    stream_replicas: int = 1
    # The most event-store connections one process opens, on demand; an idle process keeps one
    # (docs/operations.md, "Postgres connections": what `up` holds and max_connections).
    database_pool_size: int = 8
    # How long an append (a create, a start, a completion) waits for the events table's lock
    # before it gives up and stores nothing: the API answers 503, the worker tries again
    # (docs/operations.md, "A lock on the events table"). Never unbounded: a session holding a
    # conflicting lock would otherwise stop every write until it ends.
    append_lock_timeout: timedelta = timedelta(seconds=5)
    # /ready fails when events wait and the relay has not made progress for this long.
    relay_stall_seconds: int = 30
    # Each projector's self-check (projections/selfcheck.py): progress every this many seconds,
    # row counts against the store (a scan of the store's events) at this lower rate.
    projection_check_seconds: int = 10
    projection_count_seconds: int = 300
    # Browser-facing API (docs/api.md, "Auth"): origins besides the service's own whose pages
    # may use the cookie or a query token; caps on live streams, per API process.
    # `*` = any page may call the API (never with credentials; the cookie and the WebSocket
    # still take only the listed origins). Credentials: CORS answers let the cookie through.
    cors_origins: frozenset[str] = frozenset()
    cors_allow_credentials: bool = False
    max_streams_per_user: int = 20
    max_catch_up_events: int = 10_000  # history one stream catch-up may replay
    # How long a read waits for a read model: a write's answer, `?min_position=`, a stream's
    # final update (docs/api.md, "Consistency").
    read_wait_ms: int = 5_000
    # Quotas per user, across every API replica (docs/operations.md, "Quotas and rate limits"):
    # task creations per window ("120/minute"; "off") and tasks queued or running at once
    # (0: no limit). Off by default; an admin sets them per user too. The API keeps each user's
    # limits this many seconds, so a change reaches the other replicas within it.
    rate_limit: str = "off"
    max_active_tasks: int = 0
    limits_cache_seconds: int = 5
    # Running attempts per user over every worker process (0: no limit; a worker's
    # --per-user-limit still caps one process): slots in Postgres, leased like the messages.
    max_running_per_user: int = 0
    # The maintenance role (docs/operations.md, "The maintenance role"): a task pending longer
    # than this fails with error_kind `expired` (None: never); each job's interval in seconds;
    # what one sweep of a job handles at most; when a silent worker counts as lost, and when
    # a lost or stopped worker's row is removed.
    pending_ttl: timedelta | None = timedelta(hours=24)
    maintenance_expiry_seconds: int = 30
    maintenance_watchdog_seconds: int = 10
    maintenance_purge_seconds: int = 3600
    maintenance_liveness_seconds: int = 10
    maintenance_batch: int = 1000
    worker_lost_seconds: int = 30
    worker_forget_seconds: int = 86_400
    # Retention and deletion (docs/operations.md, "Retention and deletion"): finished tasks
    # older than `retention` are purged by the maintenance role (None: kept for ever), in
    # batches of `purge_batch` tasks; the event stream keeps messages `stream_max_age` (None:
    # for ever). Postgres is the source of truth: a consumer further behind than that loses
    # messages (a read model is then rebuilt with `agenttasks replay`).
    retention: timedelta | None = timedelta(days=30)
    purge_batch: int = 100
    stream_max_age: timedelta | None = timedelta(days=7)
    # The Workers view (docs/operations.md, "Workers and queues"): each worker process upserts
    # its heartbeat row this often; GET /utils/workers/ lists at most this many workers.
    worker_heartbeat_seconds: int = 5
    workers_list_max: int = 200
    # Bearer tokens each API process remembers as verified (0: verify every request): a repeat
    # skips the signature check until its expiry (docs/operations.md, "Postgres connections").
    token_cache_size: int = 1024
    # Workers. With no OpenAI key the built-in offline engine does the work.
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None  # any OpenAI-compatible server (Ollama, vLLM, ...)
    model: str = "gpt-4o-mini"
    llm_timeout: int = 120
    # AGENTTASKS_PRICES: the operator's price file over the bundled table (docs/cost.md), read
    # and checked here, at start-up. A call's reported token counts are capped at
    # max_reported_tokens each (a server reporting absurd usage cannot make absurd costs).
    prices: PriceFile | None = None
    max_reported_tokens: int = 10_000_000
    # Budgets (docs/cost.md, "Budgets"): USD per UTC day or month for every user an admin has
    # not given a budget ("5.00/day", "50/month", "off"); the share of it that emits the soft-limit
    # event; how long a model call's reservation holds if its worker dies; the ceiling of every
    # task's max_cost (None: none); how long a process keeps a user's budget.
    default_budget: str = "off"
    budget_soft_limit_percent: int = 80
    budget_lease_seconds: int = 300
    max_task_cost: Decimal | None = None
    budgets_cache_seconds: int = 5
    fetch_allowed_hosts: frozenset[str] = frozenset()  # hosts exempt from the SSRF guard
    # What one task can multiply (docs/workers.md, "Caps"): a task over one fails, the worker not.
    fetch_max_bytes: int = 5_000_000  # one page's body
    extract_timeout: int = 10  # seconds of extraction per page, in a child process
    extract_processes: int = 2  # child processes extracting pages, per worker process
    max_tokens: int = 4096  # the ceiling of every model call's max_tokens
    max_prompt_chars: int = 200_000  # system + user text of one model call
    max_step_text_chars: int = 200_000  # what one chain step works on, references filled in
    max_chain_text_chars: int = 2_000_000  # the same, summed over a chain's steps
    max_step_output_chars: int = 200_000  # a step's output handed on to later steps
    # Template JSON Schemas (docs/templates.md, "Limits"): the document, and validating against it.
    schema_max_bytes: int = 64 * 1024
    schema_max_depth: int = 32  # nesting of objects and arrays in the schema
    schema_max_subschemas: int = 500  # JSON objects in the schema
    schema_max_pattern_chars: int = 1000  # one pattern or patternProperties key
    schema_max_validation_steps: int = 50_000  # weighted keyword applications per validation
    schema_max_validation_depth: int = 100  # nested keyword applications (through $ref too)
    schema_validators_kept: int = 64  # checked schemas' validators kept per process (0: none)
    # Webhooks (docs/webhooks.md, "Limits"): what a user may register, and the deliverer's caps.
    webhook_max_endpoints_per_user: int = 10
    webhook_max_url_chars: int = 2048
    webhook_timeout: int = 10  # seconds one delivery attempt may take, answer included
    webhook_max_response_bytes: int = 64 * 1024  # of an endpoint's answer read (then dropped)
    webhook_concurrency: int = 32  # attempts at once, per deliverer process
    webhook_concurrency_per_endpoint: int = 4  # attempts at once to one endpoint
    # The deliverer's caches (docs/webhooks.md, "How fresh"): tasks' webhook_url from Created,
    # and the owners with endpoints (more owners than this: not cached, the database is asked).
    webhook_task_url_cache: int = 20_000
    webhook_owner_cache: int = 100_000
    # Seconds before each retry; the last failure after the last one disables the endpoint.
    webhook_retry_seconds: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
    # Metrics (docs/operations.md, "Metrics"): the API serves /metrics on its own port (with
    # `metrics_token` set, only to `Authorization: Bearer <token>`); every other role serves it on
    # `metrics_port` plus its offset (metrics/exposition.py; 0: off) on `metrics_host`. The
    # system-wide figures are collected from Postgres and NATS at most once per
    # `metrics_cache_seconds` per API process, however often it is scraped.
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    metrics_cache_seconds: int = 5
    metrics_token: str | None = field(default=None, repr=False)
    # Logs and traces (docs/operations.md, "Logs and traces"). None: text when stderr is a
    # terminal, JSON lines otherwise. The OTLP/HTTP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT) turns
    # OpenTelemetry spans on; None: nothing of OpenTelemetry is imported.
    log_format: str | None = None
    otel_endpoint: str | None = None
    otel_service_name: str = "agenttasks"

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
        # A process that acts as several NATS users (`migrate`: the relay's stream, the
        # workers' consumers) is given one URL per role; a comma separates a cluster's servers.
        role_urls = {
            role: url
            for role in NATS_ROLES
            if (url := env.get(f"AGENTTASKS_NATS_{role.upper()}_URL", "").strip())
        }
        if role_urls:
            values["nats_role_urls"] = role_urls
        values["database_pool_size"] = _int(
            env, "AGENTTASKS_DATABASE_POOL_SIZE", base.database_pool_size, 1, 64
        )
        if lock_wait := env.get("AGENTTASKS_APPEND_LOCK_TIMEOUT", "").strip():
            values["append_lock_timeout"] = _append_lock_timeout(lock_wait)
        values["stream_replicas"] = _int(
            env, "AGENTTASKS_STREAM_REPLICAS", base.stream_replicas, 1, 5
        )
        values["projection_check_seconds"] = _int(
            env, "AGENTTASKS_PROJECTION_CHECK_SECONDS", base.projection_check_seconds, 1, 3600
        )
        values["projection_count_seconds"] = _int(
            env, "AGENTTASKS_PROJECTION_COUNT_SECONDS", base.projection_count_seconds, 5, 86400
        )
        values["relay_stall_seconds"] = _int(
            env, "AGENTTASKS_RELAY_STALL_SECONDS", base.relay_stall_seconds, 1, 3600
        )
        values["cors_origins"] = _origins(env.get("AGENTTASKS_CORS_ORIGINS", ""))
        values["cors_allow_credentials"] = _flag(env, "AGENTTASKS_CORS_ALLOW_CREDENTIALS")
        if values["cors_allow_credentials"] and "*" in values["cors_origins"]:
            raise SettingsError(
                "AGENTTASKS_CORS_ALLOW_CREDENTIALS=true cannot go with AGENTTASKS_CORS_ORIGINS=*: "
                "any site could then act with a user's cookie; list the origins instead"
            )
        values["max_streams_per_user"] = _int(
            env, "AGENTTASKS_MAX_STREAMS_PER_USER", base.max_streams_per_user, 1, 10_000
        )
        values["max_catch_up_events"] = _int(
            env, "AGENTTASKS_MAX_CATCH_UP_EVENTS", base.max_catch_up_events, 100, 1_000_000
        )
        values["read_wait_ms"] = _int(env, "AGENTTASKS_READ_WAIT_MS", base.read_wait_ms, 0, 60_000)
        if rate := env.get("AGENTTASKS_RATE_LIMIT", "").strip():
            try:
                parse_rate(rate)
            except ValueError as error:
                raise SettingsError(f"AGENTTASKS_RATE_LIMIT: {error}") from None
            values["rate_limit"] = rate.lower()
        values["max_active_tasks"] = _int(
            env, "AGENTTASKS_MAX_ACTIVE_TASKS", base.max_active_tasks, 0, MAX_ACTIVE
        )
        values["limits_cache_seconds"] = _int(
            env, "AGENTTASKS_LIMITS_CACHE_SECONDS", base.limits_cache_seconds, 0, 300
        )
        values["max_running_per_user"] = _int(
            env, "AGENTTASKS_MAX_RUNNING_PER_USER", base.max_running_per_user, 0, 10_000
        )
        values["worker_heartbeat_seconds"] = _int(
            env, "AGENTTASKS_WORKER_HEARTBEAT_SECONDS", base.worker_heartbeat_seconds, 1, 300
        )
        values["workers_list_max"] = _int(
            env, "AGENTTASKS_WORKERS_LIST_MAX", base.workers_list_max, 1, 10_000
        )
        values["token_cache_size"] = _int(
            env, "AGENTTASKS_TOKEN_CACHE_SIZE", base.token_cache_size, 0, 100_000
        )
        if ttl := env.get("AGENTTASKS_PENDING_TTL", "").strip():
            values["pending_ttl"] = _duration(ttl, "AGENTTASKS_PENDING_TTL")
        for key, name, low, high in _MAINTENANCE_CAPS:
            values[key] = _int(env, name, getattr(base, key), low, high)
        if retention := env.get("AGENTTASKS_RETENTION", "").strip():
            values["retention"] = _duration(retention, "AGENTTASKS_RETENTION")
        values["purge_batch"] = _int(env, "AGENTTASKS_PURGE_BATCH", base.purge_batch, 1, 1000)
        if max_age := env.get("AGENTTASKS_STREAM_MAX_AGE", "").strip():
            age = _duration(max_age, "AGENTTASKS_STREAM_MAX_AGE")
            if age is not None and age < timedelta(hours=1):
                raise SettingsError("AGENTTASKS_STREAM_MAX_AGE: at least 1h, or off")
            values["stream_max_age"] = age
        if key := env.get("OPENAI_API_KEY", "").strip():
            values["openai_api_key"] = key
        if base_url := env.get("OPENAI_BASE_URL", "").strip():
            if not base_url.startswith(("http://", "https://")):
                raise SettingsError(f"OPENAI_BASE_URL must be an http(s) URL, not {base_url!r}")
            values["openai_base_url"] = base_url
        if model := env.get("AGENTTASKS_MODEL", "").strip():
            values["model"] = model
        values["llm_timeout"] = _int(env, "AGENTTASKS_LLM_TIMEOUT", base.llm_timeout, 1, 3600)
        if prices := env.get("AGENTTASKS_PRICES", "").strip():
            try:
                values["prices"] = read_price_file(prices)
            except PriceFileError as error:
                raise SettingsError(f"AGENTTASKS_PRICES: {error}") from None
        values.update(_budgets(env, base))
        hosts = env.get("AGENTTASKS_FETCH_ALLOWED_HOSTS", "")
        values["fetch_allowed_hosts"] = frozenset(
            h.strip().lower() for h in hosts.split(",") if h.strip()
        )
        for key, name, low, high in _WORKER_CAPS:
            values[key] = _int(env, name, getattr(base, key), low, high)
        for key, name, low, high in _SCHEMA_CAPS:
            values[key] = _int(env, name, getattr(base, key), low, high)
        for key, name, low, high in _WEBHOOK_CAPS:
            values[key] = _int(env, name, getattr(base, key), low, high)
        if retries := env.get("AGENTTASKS_WEBHOOK_RETRY_SECONDS", "").strip():
            values["webhook_retry_seconds"] = _delays(retries, "AGENTTASKS_WEBHOOK_RETRY_SECONDS")
        values.update(_observability(env))
        values.update(_metrics(env, base))
        settings = cls(**values)
        if settings.worker_lost_seconds < 2 * settings.worker_heartbeat_seconds:
            # A worker between two beats would be marked lost (and back alive at its next).
            raise SettingsError(
                f"AGENTTASKS_WORKER_LOST_SECONDS ({settings.worker_lost_seconds}) must be at "
                f"least twice AGENTTASKS_WORKER_HEARTBEAT_SECONDS "
                f"({settings.worker_heartbeat_seconds})"
            )
        kept, waits = settings.stream_max_age, settings.pending_ttl
        if kept is not None and (waits is None or waits >= kept):
            # A pending task's message leaves the stream at max_age: no worker could start the
            # task after that, and without an earlier expiry it would stay pending for ever.
            raise SettingsError(
                f"AGENTTASKS_PENDING_TTL ({_shown(waits)}) must be shorter than "
                f"AGENTTASKS_STREAM_MAX_AGE ({_shown(kept)}): a task still pending when its "
                "message leaves the stream can never start; shorten the TTL, or set "
                "AGENTTASKS_STREAM_MAX_AGE=off too"
            )
        if settings.budget_lease_seconds < settings.llm_timeout:
            # A reservation must outlive the call it covers, or a slow call stops counting.
            raise SettingsError(
                f"AGENTTASKS_BUDGET_LEASE_SECONDS ({settings.budget_lease_seconds}) must be at "
                f"least AGENTTASKS_LLM_TIMEOUT ({settings.llm_timeout})"
            )
        if settings.jwt_secret is not None and len(settings.jwt_secret.encode()) < 32:
            raise SettingsError("AGENTTASKS_JWT_SECRET must be at least 32 bytes long")
        return settings

    def with_(self, **changes: Any) -> Settings:
        """A copy with some values changed (the composition root fills in embedded servers)."""
        return replace(self, **changes)

    def caps(self, kind: type[Caps], prefix: str = "") -> Caps:
        """A dataclass of caps, each field read from the setting `prefix + field name`."""
        return kind(**{cap.name: getattr(self, prefix + cap.name) for cap in fields(kind)})

    def nats_url_for(self, role: str) -> str:
        """The NATS URL a process of `role` (one of NATS_ROLES) connects to."""
        url = self.nats_role_urls.get(role) or self.nats_url
        if url is None:
            raise SettingsError("no NATS server configured (AGENTTASKS_NATS_URL)")
        return url

    @property
    def stream_max_seconds(self) -> float | None:
        """The event stream's max_age in seconds (None: messages are kept for ever)."""
        return None if self.stream_max_age is None else self.stream_max_age.total_seconds()

    def eventsourcing_env(self) -> dict[str, str]:
        """The eventsourcing library's settings for our Postgres event store."""
        if self.database_url is None:
            raise SettingsError("no Postgres configured (AGENTTASKS_DATABASE_URL)")
        try:
            params = conninfo_to_dict(self.database_url)
        except Exception as error:
            raise SettingsError(f"AGENTTASKS_DATABASE_URL is not a valid URL: {error}") from None
        lock_wait = self.append_lock_timeout.total_seconds()
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": str(params.get("dbname") or "postgres"),
            "POSTGRES_HOST": str(params.get("host") or "localhost"),
            "POSTGRES_PORT": str(params.get("port") or "5432"),
            "POSTGRES_USER": str(params.get("user") or "postgres"),
            "POSTGRES_PASSWORD": str(params.get("password") or ""),
            # The library keeps POOL_SIZE connections open from the start in every process (8 in
            # each of six roles held 48 idle connections): keep one, open the rest when needed.
            "POSTGRES_POOL_SIZE": "1",
            "POSTGRES_MAX_OVERFLOW": str(self.database_pool_size - 1),
            "CREATE_TABLE": "y",
            # The library reads whole seconds (its own appends, a tracking table's migration);
            # our append reads the milliseconds (store.APPEND_LOCK_TIMEOUT_MS).
            "POSTGRES_LOCK_TIMEOUT": str(max(1, math.ceil(lock_wait))),
            "APPEND_LOCK_TIMEOUT_MS": str(max(1, round(lock_wait * 1000))),
        }


# (field, variable, lowest, highest) of the caps on what a task can multiply.
_WORKER_CAPS = (
    ("fetch_max_bytes", "AGENTTASKS_FETCH_MAX_BYTES", 1_000, 50_000_000),
    ("extract_timeout", "AGENTTASKS_EXTRACT_TIMEOUT", 1, 300),
    ("extract_processes", "AGENTTASKS_EXTRACT_PROCESSES", 1, 32),
    ("max_tokens", "AGENTTASKS_MAX_TOKENS", 16, 128_000),
    ("max_prompt_chars", "AGENTTASKS_MAX_PROMPT_CHARS", 1_000, 2_000_000),
    ("max_step_text_chars", "AGENTTASKS_MAX_STEP_TEXT_CHARS", 1_000, 10_000_000),
    ("max_chain_text_chars", "AGENTTASKS_MAX_CHAIN_TEXT_CHARS", 1_000, 100_000_000),
    ("max_step_output_chars", "AGENTTASKS_MAX_STEP_OUTPUT_CHARS", 1_000, 10_000_000),
    ("max_reported_tokens", "AGENTTASKS_MAX_REPORTED_TOKENS", 1_000, 1_000_000_000),
)


# (field, variable, lowest, highest) of the maintenance role's intervals and sweeps.
_MAINTENANCE_CAPS = (
    ("maintenance_expiry_seconds", "AGENTTASKS_MAINTENANCE_EXPIRY_SECONDS", 1, 86_400),
    ("maintenance_watchdog_seconds", "AGENTTASKS_MAINTENANCE_WATCHDOG_SECONDS", 1, 3600),
    ("maintenance_purge_seconds", "AGENTTASKS_MAINTENANCE_PURGE_SECONDS", 1, 7 * 86_400),
    ("maintenance_liveness_seconds", "AGENTTASKS_MAINTENANCE_LIVENESS_SECONDS", 1, 3600),
    ("maintenance_batch", "AGENTTASKS_MAINTENANCE_BATCH", 1, 100_000),
    ("worker_lost_seconds", "AGENTTASKS_WORKER_LOST_SECONDS", 3, 86_400),
    ("worker_forget_seconds", "AGENTTASKS_WORKER_FORGET_SECONDS", 60, 365 * 86_400),
)


def _shown(duration: timedelta | None) -> str:
    return "off" if duration is None else format_duration(duration)


def _duration(raw: str, name: str) -> timedelta | None:
    try:
        duration = parse_duration(raw, allow_off=True)
    except ValueError as error:
        raise SettingsError(f"{name}: {error}, not {raw!r}") from None
    if duration is not None and duration < timedelta(seconds=1):
        raise SettingsError(f"{name} must be at least 1s (or off), not {raw!r}")
    return duration


APPEND_LOCK_TIMEOUT_MAX = timedelta(minutes=5)


def _append_lock_timeout(raw: str) -> timedelta:
    name = "AGENTTASKS_APPEND_LOCK_TIMEOUT"
    try:
        duration = parse_duration(raw)
    except ValueError as error:
        raise SettingsError(f"{name}: {error}, not {raw!r}") from None
    assert duration is not None  # `off` is not allowed: an append never waits for ever
    if not timedelta(seconds=1) <= duration <= APPEND_LOCK_TIMEOUT_MAX:
        raise SettingsError(f"{name} must be from 1s to 5m, not {raw!r}")
    return duration


def _origins(raw: str) -> frozenset[str]:
    origins = set()
    for item in raw.split(","):
        origin = item.strip().lower().rstrip("/")
        if not origin:
            continue
        if origin == "*":
            origins.add(origin)
            continue
        scheme, sep, netloc = origin.partition("://")
        # A browser's Origin is scheme://host[:port], nothing more: anything else never matches.
        if scheme not in ("http", "https") or not sep or not netloc or "/" in netloc:
            raise SettingsError(
                f"AGENTTASKS_CORS_ORIGINS must list origins like https://app.example.com, "
                f"not {item.strip()!r}"
            )
        if "*" in netloc:
            # Litestar would read it as a pattern (`https://*` = every https page), past the
            # check on `*` with credentials; the cookie and WebSocket checks match exactly.
            raise SettingsError(
                f"AGENTTASKS_CORS_ORIGINS takes no wildcard inside an origin: {item.strip()!r} "
                f"(list each origin, or `*` alone for every page)"
            )
        origins.add(origin)
    return frozenset(origins)


# (field, variable, lowest, highest) of the caps on template schemas. The depth caps stay well
# under Python's recursion limit (jsonschema recurses several frames per level).
_SCHEMA_CAPS = (
    ("schema_max_bytes", "AGENTTASKS_SCHEMA_MAX_BYTES", 1_024, 1_048_576),
    ("schema_max_depth", "AGENTTASKS_SCHEMA_MAX_DEPTH", 2, 64),
    ("schema_max_subschemas", "AGENTTASKS_SCHEMA_MAX_SUBSCHEMAS", 1, 5_000),
    ("schema_max_pattern_chars", "AGENTTASKS_SCHEMA_MAX_PATTERN_CHARS", 1, 10_000),
    ("schema_max_validation_steps", "AGENTTASKS_SCHEMA_MAX_VALIDATION_STEPS", 100, 10_000_000),
    ("schema_max_validation_depth", "AGENTTASKS_SCHEMA_MAX_VALIDATION_DEPTH", 10, 150),
    ("schema_validators_kept", "AGENTTASKS_SCHEMA_VALIDATORS_KEPT", 0, 10_000),
)


# (field, variable, lowest, highest) of the caps on webhooks.
_WEBHOOK_CAPS = (
    ("webhook_max_endpoints_per_user", "AGENTTASKS_WEBHOOK_MAX_ENDPOINTS_PER_USER", 1, 1000),
    ("webhook_max_url_chars", "AGENTTASKS_WEBHOOK_MAX_URL_CHARS", 64, 8192),
    ("webhook_timeout", "AGENTTASKS_WEBHOOK_TIMEOUT", 1, 120),
    ("webhook_max_response_bytes", "AGENTTASKS_WEBHOOK_MAX_RESPONSE_BYTES", 1024, 10_000_000),
    ("webhook_concurrency", "AGENTTASKS_WEBHOOK_CONCURRENCY", 1, 1000),
    ("webhook_concurrency_per_endpoint", "AGENTTASKS_WEBHOOK_CONCURRENCY_PER_ENDPOINT", 1, 100),
    ("webhook_task_url_cache", "AGENTTASKS_WEBHOOK_TASK_URL_CACHE", 0, 1_000_000),
    ("webhook_owner_cache", "AGENTTASKS_WEBHOOK_OWNER_CACHE", 0, 1_000_000),
)


def _delays(raw: str, name: str) -> tuple[float, ...]:
    try:
        delays = tuple(float(item) for item in raw.split(","))
    except ValueError:
        raise SettingsError(f"{name} must list seconds separated by commas, not {raw!r}") from None
    if not 1 <= len(delays) <= 20 or not all(0 <= d <= 86_400 for d in delays):
        raise SettingsError(f"{name} must list 1 to 20 delays, each of 0 to 86400 seconds")
    return delays


def _observability(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if log_format := env.get("AGENTTASKS_LOG_FORMAT", "").strip().lower():
        if log_format not in ("json", "text"):
            raise SettingsError(f"AGENTTASKS_LOG_FORMAT must be json or text, not {log_format!r}")
        values["log_format"] = log_format
    if endpoint := env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip():
        if not endpoint.startswith(("http://", "https://")) or len(endpoint) > 2048:
            raise SettingsError(
                "OTEL_EXPORTER_OTLP_ENDPOINT must be an http(s) URL of at most 2048 characters"
            )
        values["otel_endpoint"] = endpoint.rstrip("/")
    if name := env.get("OTEL_SERVICE_NAME", "").strip():
        values["otel_service_name"] = name[:200]
    return values


def _budgets(env: Mapping[str, str], base: Settings) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if budget := env.get("AGENTTASKS_DEFAULT_BUDGET", "").strip():
        try:
            # ASCII only: Python's \d reads other scripts' digits too (as the API refuses them).
            limit = parse_budget(budget if budget.isascii() else "not ascii")
        except ValueError as error:
            raise SettingsError(f"AGENTTASKS_DEFAULT_BUDGET: {error}") from None
        values["default_budget"] = "off" if limit is None else limit.text
    values["budget_soft_limit_percent"] = _int(
        env, "AGENTTASKS_BUDGET_SOFT_LIMIT_PERCENT", base.budget_soft_limit_percent, 1, 100
    )
    values["budget_lease_seconds"] = _int(
        env, "AGENTTASKS_BUDGET_LEASE_SECONDS", base.budget_lease_seconds, 10, 86_400
    )
    values["budgets_cache_seconds"] = _int(
        env, "AGENTTASKS_BUDGETS_CACHE_SECONDS", base.budgets_cache_seconds, 0, 300
    )
    raw = env.get("AGENTTASKS_MAX_TASK_COST", "").strip().lower()
    if raw and raw != "off":
        try:
            cost = Decimal(raw) if len(raw) <= 20 else None
        except InvalidOperation:
            cost = None
        if cost is None or not cost.is_finite() or not 0 < cost <= MAX_BUDGET_USD:
            raise SettingsError(
                f"AGENTTASKS_MAX_TASK_COST must be USD above 0 and at most {MAX_BUDGET_USD} "
                "(such as 2.50), or off"
            )
        values["max_task_cost"] = cost
    return values


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise SettingsError(f"{name} must be true or false, not {raw!r}")


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


def _metrics(env: Mapping[str, str], base: Settings) -> dict[str, Any]:
    # The highest offset (metrics/exposition.py) must still give a valid port.
    values: dict[str, Any] = {
        "metrics_port": _int(env, "AGENTTASKS_METRICS_PORT", base.metrics_port, 0, 65_000),
        "metrics_cache_seconds": _int(
            env, "AGENTTASKS_METRICS_CACHE_SECONDS", base.metrics_cache_seconds, 1, 300
        ),
    }
    if host := env.get("AGENTTASKS_METRICS_HOST", "").strip():
        values["metrics_host"] = host
    if token := env.get("AGENTTASKS_METRICS_TOKEN", "").strip():
        if len(token) < 16:
            raise SettingsError("AGENTTASKS_METRICS_TOKEN must be at least 16 characters long")
        values["metrics_token"] = token
    return values
