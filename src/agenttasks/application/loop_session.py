"""One autocommit Postgres session of an event loop, and how to tell a broken session.

The appends made on an event loop (the API's creates and the worker's reports in
`loop_commit.py`, the worker's starts in `workers/loop_start.py`) each hold one such session:
opened on first use, dropped when it broke, opened again on the next use.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg


class LoopSession:
    """An autocommit connection opened when first needed and again after it was dropped."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self.connection: psycopg.AsyncConnection[Any] | None = None

    async def get(self) -> psycopg.AsyncConnection[Any]:
        """The open session (a new one if there was none, or it was closed)."""
        if self.connection is None or self.connection.closed:
            self.connection = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        return self.connection

    async def drop(self) -> None:
        """Closes the session (errors ignored: it may be broken already); the next get opens one."""
        connection, self.connection = self.connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()


def session_lost(error: BaseException | None) -> bool:
    """Whether `error` (a psycopg error) says the session broke or could not be opened.

    Not a lock or statement timeout of a live session: those are OperationalErrors too, and
    must not be waited out a second time.
    """
    if isinstance(error, psycopg.InterfaceError):
        return True  # the connection was already closed
    state = getattr(error, "sqlstate", None)
    # None: the client lost the server; 08: connection exceptions; 57P01-57P03: the server
    # shut down or restarted under the session.
    return state is None or state.startswith("08") or state in {"57P01", "57P02", "57P03"}
