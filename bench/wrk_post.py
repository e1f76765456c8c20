"""One wrk run of JSON POSTs (C, HTTP/1.1 keep-alive), shared by bench_create and bench_floor."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from typing import Any

_SCRIPT = """
wrk.method = "POST"
wrk.body = [[%s]]
wrk.headers["Content-Type"] = "application/json"
%s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("FIGURES %%d %%d %%d %%f %%f\\n", summary.requests, summary.duration,
    e.status + e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_posts(
    url: str, body: Any, clients: int, seconds: float, token: str | None = None
) -> tuple[int, float, float, float, int]:
    """(requests, seconds, p50 ms, p99 ms, errors) of `clients` connections POSTing `body`."""
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_SCRIPT % (json.dumps(body), auth))
    try:
        output = subprocess.run(
            ["wrk", "-t", str(min(2, clients)), "-c", str(clients), "-d", f"{int(seconds)}s",
             "-s", script.name, url],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    finally:
        os.unlink(script.name)
    line = next(line for line in output.splitlines() if line.startswith("FIGURES"))
    requests, duration_us, errors, p50_us, p99_us = line.split()[1:]
    return (
        int(requests), int(duration_us) / 1e6, float(p50_us) / 1000, float(p99_us) / 1000,
        int(errors),
    )  # fmt: skip
