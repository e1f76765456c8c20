"""The command line of an in-process micro-benchmark, alone or alternated over source trees.

`measure(n)` returns microseconds per call by name. Without `--trees` the figures are printed;
with `--trees A B ...` the script runs itself once per tree and round in a subprocess with
PYTHONPATH=<tree> (which works over the editable install), alternating the trees round by round
so the machine's noise hits each, and prints each figure's median and range per tree.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any


def best_per_call(fn: Callable[[], Any], n: int) -> float:
    """Microseconds per call: the best of 3 runs of `n` calls (CPU time of this process)."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, time.process_time() - start)
    return best / n * 1e6


def main(script: str, description: str, measure: Callable[[int], dict[str, float]]) -> None:
    """Runs `measure` as `script`'s command line says (see the module's docstring)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--trees", nargs="*", default=[])
    parser.add_argument("--one", action="store_true", help="measure once, print JSON")
    args = parser.parse_args()
    if args.one or not args.trees:
        figures = measure(args.n)
        if args.one:
            print(json.dumps(figures))
        else:
            for name, value in figures.items():
                print(f"{name:40} {value:8.2f} us")
        return
    runs: dict[str, list[dict[str, float]]] = {tree: [] for tree in args.trees}
    for _ in range(args.rounds):
        for tree in args.trees:  # alternated round by round
            env = {**os.environ, "PYTHONPATH": tree}
            out = subprocess.run(
                [sys.executable, script, "--one", "--n", str(args.n)],
                env=env, capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            runs[tree].append(json.loads(out.strip().splitlines()[-1]))
    names = list(runs[args.trees[0]][0])
    print(
        f"{'us per call (median [min-max])':40} " + " ".join(f"{t[-28:]:>28}" for t in args.trees)
    )
    for name in names:
        cells = []
        for tree in args.trees:
            values = [run[name] for run in runs[tree]]
            cells.append(f"{statistics.median(values):7.2f} [{min(values):.2f}-{max(values):.2f}]")
        print(f"{name:40} " + " ".join(f"{c:>28}" for c in cells))
