"""Embedded servers for `agenttasks up` and the tests: real PostgreSQL and NATS from PyPI wheels."""

from __future__ import annotations


class ServerStartError(RuntimeError):
    """An embedded server could not be started; the message says why and where its log is."""
