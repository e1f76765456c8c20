"""The webhook tables: endpoints, deliveries (an outbox) and every attempt. Plain Postgres.

Not event-sourced on purpose (docs/webhooks.md, "Why tables"): an endpoint holds a signing
secret, which a user must be able to delete for good, and an append-only log keeps for ever;
its health (failures, disabled) and the attempts are operational data, not facts of a task.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from agenttasks.application.webhooks import TooManyWebhooks

DDL_LOCK = 0x61677477_65626B73  # "agtwebks": one creator of the tables at a time
DDL = """
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id uuid PRIMARY KEY,
    owner text NOT NULL,
    url text NOT NULL,
    events text[] NOT NULL,
    secret text NOT NULL,
    status text NOT NULL DEFAULT 'enabled',
    disabled_reason text,
    consecutive_failures integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_success_at timestamptz,
    last_failure_at timestamptz
);
CREATE INDEX IF NOT EXISTS webhook_endpoints_owner ON webhook_endpoints (owner, created_at);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id bigserial PRIMARY KEY,
    target text NOT NULL,  -- an endpoint's id, or task:<host>:<port> for a task's own URL
    message_id text NOT NULL,
    owner text NOT NULL,
    endpoint_id uuid REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    url text NOT NULL,
    task_id uuid NOT NULL,
    event_type text NOT NULL,
    body bytea NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (target, message_id)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS webhook_attempts (
    id bigserial PRIMARY KEY,
    delivery_id bigint NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    endpoint_id uuid,
    owner text NOT NULL,
    attempt integer NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    status_code integer,
    error text,
    duration_ms integer NOT NULL,
    outcome text NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id);
CREATE INDEX IF NOT EXISTS webhook_attempts_owner ON webhook_attempts (owner, id);
"""
# Every change that can add an endpoint to an owner is announced, so a deliverer's cache of
# the owners with endpoints (interest.py) is read again at once, not on a timer.
CHANGES_CHANNEL = "agenttasks_webhook_endpoints"
TRIGGER_DDL = f"""
CREATE OR REPLACE FUNCTION webhook_endpoints_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANGES_CHANNEL}', '');
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER webhook_endpoints_changed
    AFTER INSERT OR DELETE OR UPDATE OF status ON webhook_endpoints
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_endpoints_changed();
"""
ERROR_MAX_CHARS = 300

_ENDPOINT = (
    "id, owner, url, events, status, disabled_reason, consecutive_failures, created_at, "
    "last_success_at, last_failure_at"
)
_ATTEMPT = (
    "SELECT a.delivery_id, d.message_id AS webhook_id, d.event_type, d.task_id, "
    "a.attempt, a.at, a.status_code, a.error, a.duration_ms, a.outcome, "
    "d.status AS delivery_status, d.next_attempt_at "
    "FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id"
)


@dataclass(frozen=True)
class Endpoint:
    """A registered endpoint, without its secret."""

    id: UUID
    owner: str
    url: str
    events: list[str]
    status: str  # enabled | disabled
    disabled_reason: str | None
    consecutive_failures: int
    created_at: datetime
    last_success_at: datetime | None
    last_failure_at: datetime | None


@dataclass(frozen=True)
class Target:
    """Where one event goes: an endpoint of its owner, or the task's own URL."""

    target: str  # the endpoint's id, or "task"
    endpoint_id: UUID | None
    url: str


@dataclass(frozen=True)
class Due:
    """A delivery claimed for an attempt."""

    id: int
    target: str
    message_id: str
    owner: str
    endpoint_id: UUID | None
    url: str
    body: bytes
    attempts: int  # made before this one
    secret: str | None  # the endpoint's; None: a task URL (the owner's derived secret)
    endpoint_status: str | None


async def ensure_tables(connection: AsyncConnection[Any]) -> None:
    """Creates the webhook tables if needed."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
        await connection.execute(DDL)
        await connection.execute(TRIGGER_DDL)


async def register(
    pool: AsyncConnectionPool[Any],
    *,
    owner: str,
    url: str,
    events: list[str],
    secret: str,
    max_per_user: int,
) -> Endpoint:
    """Stores a new endpoint; TooManyWebhooks when the owner is at the cap."""
    async with pool.connection() as connection, connection.transaction():
        # Serializes one owner's registrations, so two at once cannot both pass the cap.
        await connection.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (owner,))
        cursor = await connection.execute(
            "SELECT count(*) FROM webhook_endpoints WHERE owner = %s", (owner,)
        )
        row = await cursor.fetchone()
        if row is not None and row[0] >= max_per_user:
            raise TooManyWebhooks(
                f"you have {row[0]} webhook endpoints; the limit is {max_per_user}"
            )
        cursor = await connection.execute(
            "INSERT INTO webhook_endpoints (id, owner, url, events, secret) "  # noqa: S608
            f"VALUES (%s, %s, %s, %s, %s) RETURNING {_ENDPOINT}",
            (uuid4(), owner, url, events, secret),
        )
        return Endpoint(*(await cursor.fetchone() or ()))


async def endpoints(
    pool: AsyncConnectionPool[Any], owner: str | None, limit: int, offset: int
) -> tuple[int, list[Endpoint]]:
    """One page of endpoints (owner None: everyone's) and how many there are."""
    where, params = ("WHERE owner = %s", [owner]) if owner is not None else ("", [])
    async with pool.connection() as connection:
        cursor = await connection.execute(
            f"SELECT count(*) FROM webhook_endpoints {where}",  # noqa: S608
            params,
        )
        count = (await cursor.fetchone() or (0,))[0]
        cursor = await connection.execute(
            f"SELECT {_ENDPOINT} FROM webhook_endpoints {where} "  # noqa: S608
            "ORDER BY created_at, id LIMIT %s OFFSET %s",
            [*params, limit, offset],
        )
        return count, [Endpoint(*row) for row in await cursor.fetchall()]


async def endpoint(pool: AsyncConnectionPool[Any], endpoint_id: UUID) -> Endpoint | None:
    """One endpoint, or None."""
    async with pool.connection() as connection:
        cursor = await connection.execute(
            f"SELECT {_ENDPOINT} FROM webhook_endpoints WHERE id = %s",  # noqa: S608
            (endpoint_id,),
        )
        row = await cursor.fetchone()
        return Endpoint(*row) if row else None


async def remove(pool: AsyncConnectionPool[Any], endpoint_id: UUID) -> None:
    """Deletes an endpoint with its secret, its deliveries and their attempts."""
    async with pool.connection() as connection:
        await connection.execute("DELETE FROM webhook_endpoints WHERE id = %s", (endpoint_id,))


async def attempts(
    pool: AsyncConnectionPool[Any], endpoint_id: UUID, limit: int, offset: int
) -> tuple[int, list[dict[str, Any]]]:
    """One page of an endpoint's attempts, newest first, and how many there are."""
    async with pool.connection() as connection:
        cursor = await connection.execute(
            "SELECT count(*) FROM webhook_attempts WHERE endpoint_id = %s", (endpoint_id,)
        )
        count = (await cursor.fetchone() or (0,))[0]
        rows = await connection.cursor(row_factory=dict_row).execute(
            f"{_ATTEMPT} WHERE a.endpoint_id = %s ORDER BY a.id DESC LIMIT %s OFFSET %s",
            (endpoint_id, limit, offset),
        )
        return count, await rows.fetchall()


# The deliverer's side ------------------------------------------------------------------------


async def targets(
    connection: AsyncConnection[Any], owner: str, event_type: str, happened: datetime
) -> list[Target]:
    """The owner's enabled endpoints that take `event_type` and existed when it happened."""
    cursor = await connection.execute(
        "SELECT id, url FROM webhook_endpoints WHERE owner = %s AND status = 'enabled' "
        "AND %s = ANY(events) AND created_at <= %s ORDER BY id",
        (owner, event_type, happened),
    )
    return [Target(str(row[0]), row[0], row[1]) for row in await cursor.fetchall()]


async def enqueue(
    connection: AsyncConnection[Any],
    targets: list[Target],
    *,
    message_id: str,
    owner: str,
    task_id: UUID,
    event_type: str,
    body: bytes,
) -> None:
    """One pending delivery per target; one already there (a redelivered event) stays as is."""
    for target in targets:
        await connection.execute(
            "INSERT INTO webhook_deliveries (target, message_id, owner, endpoint_id, url, "
            "task_id, event_type, body) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (target, message_id) DO NOTHING",
            (
                target.target,
                message_id,
                owner,
                target.endpoint_id,
                target.url,
                task_id,
                event_type,
                body,
            ),
        )


async def claim(
    connection: AsyncConnection[Any], limit: int, busy: list[str], lease_seconds: float
) -> list[Due]:
    """Up to `limit` due deliveries to targets not in `busy`, leased for `lease_seconds`.

    The lease moves `next_attempt_at` ahead: a deliverer that dies mid-attempt leaves the row
    due again once it runs out, so another (or the restarted one) makes the attempt.
    """
    cursor = await connection.execute(
        "UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => %s) "
        "FROM (SELECT id FROM webhook_deliveries WHERE status = 'pending' "
        "AND next_attempt_at <= now() AND NOT (target = ANY(%s)) "
        "ORDER BY next_attempt_at, id LIMIT %s FOR UPDATE SKIP LOCKED) due "
        "WHERE d.id = due.id RETURNING d.id",
        (lease_seconds, busy, limit),
    )
    ids = [row[0] for row in await cursor.fetchall()]
    if not ids:
        return []
    cursor = await connection.execute(
        "SELECT d.id, d.target, d.message_id, d.owner, d.endpoint_id, d.url, d.body, "
        "d.attempts, e.secret, e.status FROM webhook_deliveries d "
        "LEFT JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id = ANY(%s) "
        "ORDER BY d.next_attempt_at, d.id",
        (ids,),
    )
    return [
        Due(r[0], r[1], r[2], r[3], r[4], r[5], bytes(r[6]), r[7], r[8], r[9])
        for r in await cursor.fetchall()
    ]


async def release(connection: AsyncConnection[Any], ids: list[int]) -> None:
    """Hands claimed deliveries back unattempted: due again at once."""
    await connection.execute(
        "UPDATE webhook_deliveries SET next_attempt_at = now() WHERE id = ANY(%s) "
        "AND status = 'pending'",
        (ids,),
    )


async def task_attempts(
    pool: AsyncConnectionPool[Any], owner: str | None, task_id: UUID, limit: int, offset: int
) -> tuple[int, list[dict[str, Any]]]:
    """One page of the attempts to a task's own webhook_url, newest first, and their count."""
    where = "a.endpoint_id IS NULL AND d.task_id = %s" + (" AND a.owner = %s" if owner else "")
    params: list[Any] = [task_id, owner] if owner else [task_id]
    async with pool.connection() as connection:
        cursor = await connection.execute(
            "SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries d "  # noqa: S608
            f"ON d.id = a.delivery_id WHERE {where}",
            params,
        )
        count = (await cursor.fetchone() or (0,))[0]
        rows = await connection.cursor(row_factory=dict_row).execute(
            f"{_ATTEMPT} WHERE {where} ORDER BY a.id DESC LIMIT %s OFFSET %s",
            [*params, limit, offset],
        )
        return count, await rows.fetchall()


async def record_attempt(
    connection: AsyncConnection[Any],
    due: Due,
    *,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
    retry_in: float | None,
    disable_reason: str | None,
) -> str:
    """Stores an attempt and its consequences; returns the outcome.

    Outcomes: delivered (a 2xx), retrying (`retry_in` seconds from now), failed (no retry left;
    `disable_reason` then disables the endpoint, with its pending deliveries cancelled).
    """
    delivered = error is None
    outcome = "delivered" if delivered else ("retrying" if retry_in is not None else "failed")
    async with connection.transaction():
        await connection.execute(
            "INSERT INTO webhook_attempts (delivery_id, endpoint_id, owner, attempt, status_code, "
            "error, duration_ms, outcome) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                due.id,
                due.endpoint_id,
                due.owner,
                due.attempts + 1,
                status_code,
                error[:ERROR_MAX_CHARS] if error else None,
                duration_ms,
                outcome,
            ),
        )
        await connection.execute(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, status = %s, "
            "next_attempt_at = now() + make_interval(secs => %s) WHERE id = %s",
            ("pending" if outcome == "retrying" else outcome, retry_in or 0, due.id),
        )
        if due.endpoint_id is None:
            return outcome
        if delivered:
            await connection.execute(
                "UPDATE webhook_endpoints SET consecutive_failures = 0, last_success_at = now() "
                "WHERE id = %s",
                (due.endpoint_id,),
            )
            return outcome
        await connection.execute(
            "UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + 1, "
            "last_failure_at = now() WHERE id = %s",
            (due.endpoint_id,),
        )
        if outcome == "failed" and disable_reason is not None:
            await disable(connection, due.endpoint_id, disable_reason)
    return outcome


async def disable(connection: AsyncConnection[Any], endpoint_id: UUID, reason: str) -> None:
    """Disables an endpoint (its owner reads why) and cancels what waits for it."""
    await connection.execute(
        "UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = %s WHERE id = %s",
        (reason, endpoint_id),
    )
    await connection.execute(
        "UPDATE webhook_deliveries SET status = 'cancelled' "
        "WHERE endpoint_id = %s AND status = 'pending'",
        (endpoint_id,),
    )
