"""The event store's JSON codec in-process: microseconds per event, encode and decode, per kind.

Measures `mapper.to_stored_event` (encode) and `mapper.to_domain_event` (decode) of the
EventStore's own mapper for the events of a lifecycle (tests/contracts/samples: Created, Started,
Completed) and a few more kinds, plus `transcoder.encode` / `transcoder.decode` alone, with
time.process_time over `--n` calls, best of 3 repeats per round.

With `--trees A B ...` it runs itself once per tree and round in a subprocess with
PYTHONPATH=<tree>/src, alternating the trees round by round (before/after in one sitting), and
prints the median and the spread (min-max) of each figure per tree. Asserts nothing.

    python bench/bench_codec.py [--n 20000] [--rounds 5] [--trees /tmp/before/src src]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from alternate import best_per_call
from alternate import main as run

ROOT = Path(__file__).resolve().parents[1]
KINDS = [
    "Task.Created.v3.with_webhook",
    "Task.Started.v2.first",
    "Task.Completed.v2.summary",
    "Task.ModelCalled.v1.priced",
    "Template.Created.v1.blog",
]


def measure(n: int) -> dict[str, float]:
    """Microseconds per event of each kind, encode and decode, through the mapper and alone."""
    sys.path.append(str(ROOT))  # tests.contracts.samples, from this checkout
    from tests.contracts.samples import CURRENT

    from agenttasks.application.store import open_event_store

    mapper = open_event_store().mapper
    transcoder = mapper.transcoder
    figures: dict[str, float] = {}
    for kind in KINDS:
        event = CURRENT[kind]
        stored = mapper.to_stored_event(event)
        state = dict(vars(event))
        state.pop("originator_id")
        state.pop("originator_version")
        short = kind.split(".v")[0]
        figures[f"{short} to_stored_event"] = best_per_call(
            lambda e=event: mapper.to_stored_event(e), n
        )
        figures[f"{short} to_domain_event"] = best_per_call(
            lambda s=stored: mapper.to_domain_event(s), n
        )
        figures[f"{short} encode"] = best_per_call(lambda s=state: transcoder.encode(s), n)
        figures[f"{short} decode"] = best_per_call(lambda b=stored.state: transcoder.decode(b), n)
    # User JSON of some size: a 1,000-number dataset in a config.
    data = {"data": [i * 1.5 for i in range(500)] + list(range(500)), "name": "ds"}
    blob = transcoder.encode(data)
    figures["dataset(1000) encode"] = best_per_call(
        lambda: transcoder.encode(data), max(1, n // 100)
    )
    figures["dataset(1000) decode"] = best_per_call(
        lambda: transcoder.decode(blob), max(1, n // 100)
    )
    return figures


def main() -> None:
    run(__file__, __doc__.splitlines()[0], measure)


if __name__ == "__main__":
    main()
