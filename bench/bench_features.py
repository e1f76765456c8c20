"""What the per-create features cost: quotas and OpenTelemetry tracing, on and off, side by side.

Runs bench_create.py (its own `up` each time, wrk at 8 clients, CPU per create across every
process with the pipeline drained) in three configurations, alternated for `--rounds` so the
machine's noise hits each alike:

- base: the defaults (quotas off; W3C traceparent in every event, no span export);
- quotas: AGENTTASKS_RATE_LIMIT and AGENTTASKS_MAX_ACTIVE_TASKS set high enough never to refuse,
  so every create pays both checks in Postgres;
- otel: OTEL_EXPORTER_OTLP_ENDPOINT at a loopback sink (a stand-in collector that answers 200),
  so every role makes and exports spans.

    python bench/bench_features.py [--rounds 2] [--seconds 8] [--clients 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent


class _Sink(BaseHTTPRequestHandler):
    """Takes any OTLP/HTTP export and answers an empty ExportTraceServiceResponse."""

    def do_POST(self) -> None:  # the stdlib handler calls it by this name
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def run(env: dict[str, str], clients: int, seconds: float) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        path = Path(out.name)
    subprocess.run(
        [sys.executable, str(HERE / "bench_create.py"), "--clients", str(clients),
         "--seconds", str(seconds), "--json", str(path)],
        env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    figures = json.loads(path.read_text())["clients"][str(clients)]
    path.unlink()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    configs = {
        "base": {},
        "quotas": {
            "AGENTTASKS_RATE_LIMIT": "1000000/minute",
            "AGENTTASKS_MAX_ACTIVE_TASKS": "1000000",
        },
        "otel": {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.server_port}"},
    }
    results: dict[str, list[dict]] = {name: [] for name in configs}
    for round_ in range(args.rounds):
        for name, env in configs.items():
            figures = run(env, args.clients, args.seconds)
            results[name].append(figures)
            print(
                f"round {round_ + 1} {name:7} {figures['creates_per_s']:7.0f} creates/s"
                f"  p50 {figures['p50_ms']:6.1f} ms  CPU {figures['cpu_ms_per_create']:6.2f} ms/create",
                flush=True,
            )
    sink.shutdown()
    base = statistics.median(r["cpu_ms_per_create"] for r in results["base"])
    print(f"\n{args.clients} clients, {args.rounds} rounds, medians (range):")
    for name, runs in results.items():
        cpu = [r["cpu_ms_per_create"] for r in runs]
        rate = [r["creates_per_s"] for r in runs]
        print(
            f"  {name:7} CPU per create {statistics.median(cpu):.2f} ms ({min(cpu):.2f}-{max(cpu):.2f}),"
            f" {statistics.median(cpu) - base:+.2f} ms vs base;"
            f" {statistics.median(rate):.0f} creates/s ({min(rate):.0f}-{max(rate):.0f})"
        )


if __name__ == "__main__":
    main()
