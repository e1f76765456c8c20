"""The per-process instruments (prometheus_client's default registry): this process's own view.

System-wide figures (task totals, backlog, lags) are not here: they are read at scrape time
(system.py), so every replica reports the same numbers. Labels here are closed sets too.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

LIMITS = ("rate", "active", "streams")
TOKEN_KINDS = ("prompt", "completion")

RATE_LIMITED = Counter(
    "agenttasks_rate_limited_requests",
    "Requests this API process answered 429 (limit: rate, active, streams)",
    ["limit"],
)
LIVE_STREAMS = Gauge(
    "agenttasks_live_streams_open", "SSE and WebSocket streams open in this API process"
)
LLM_TOKENS = Counter(
    "agenttasks_llm_tokens",
    "Tokens the model reported for this worker process's calls (model: the configured name)",
    ["model", "kind"],
)
ROLE = Gauge("agenttasks_role_info", "1, labelled with this process's role", ["role"])
MAINTENANCE_LEADER = Gauge(
    "agenttasks_maintenance_leader", "1 while this maintain process holds the leader lock"
)

for _limit in LIMITS:
    RATE_LIMITED.labels(_limit)


def rate_limited(limit: str) -> None:
    """Counts one 429 (an unknown limit name counts as `rate`: the label set stays closed)."""
    RATE_LIMITED.labels(limit if limit in LIMITS else "rate").inc()
