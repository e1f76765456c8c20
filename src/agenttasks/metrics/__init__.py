"""Prometheus metrics: per-process instruments, the system-wide collector, the exposition.

docs/operations.md ("Metrics") lists every metric, its labels, and whether it is per process
or read from Postgres/JetStream at scrape time (the same on every replica).
"""
