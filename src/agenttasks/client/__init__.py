"""A Python client for the agenttasks HTTP API (docs/client.md).

Imports httpx and msgspec only, never the server's stack: a program that uses it does not load
Litestar, NATS, psycopg or eventsourcing.
"""

from __future__ import annotations

from agenttasks.client.aio import AsyncClient
from agenttasks.client.errors import ApiError
from agenttasks.client.models import (
    FINISHED,
    Followed,
    Resync,
    StoredEvent,
    Task,
    TaskEvent,
    TaskPage,
    Update,
)
from agenttasks.client.options import Options
from agenttasks.client.sse import StreamError
from agenttasks.client.sync import Client

__all__ = [
    "FINISHED",
    "ApiError",
    "AsyncClient",
    "Client",
    "Followed",
    "Options",
    "Resync",
    "StoredEvent",
    "StreamError",
    "Task",
    "TaskEvent",
    "TaskPage",
    "Update",
]
