"""The deliverer's CPU per lifecycle task: bench_workers with every role in its own process.

`agenttasks up --separate-roles` runs the deliverer as its own process, so bench_workers' CPU
table has a `deliver` row (with `up`'s default grouping it is folded into the background
process). Nobody has a webhook endpoint and no task a `webhook_url`: the common case, where the
deliverer only has to pass every ending over.

    python bench/bench_deliver.py [--tasks 5000] [--latency-samples 50] [bench_workers options]

Run it against another tree with PYTHONPATH=<tree>/src (the child processes inherit it).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_create
import bench_workers


def main() -> None:
    """bench_workers.main with `up --separate-roles`."""
    start_up = bench_create.start_up

    def separate(home: Path, *extra: str):  # type: ignore[no-untyped-def]
        return start_up(home, *extra, "--separate-roles")

    bench_workers.start_up = separate  # type: ignore[attr-defined]
    if "--latency-samples" not in sys.argv:
        sys.argv += ["--latency-samples", "50"]
    bench_workers.main()


if __name__ == "__main__":
    main()
