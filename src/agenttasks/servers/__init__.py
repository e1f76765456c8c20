"""Embedded servers for `agenttasks up` and the tests: real PostgreSQL and NATS from PyPI wheels."""
