"""A steady CPU load beside a benchmark: a stand-in for the "loaded hour" of a shared machine.

One process per core burns `fraction` of every 10 ms slice and sleeps the rest, so about that
fraction of the machine is taken from whatever is being measured, the way a busy neighbour or a
host stealing time would take it. Both our benchmark and the Celery peer run under the same load.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

SLICE = 0.010


def _burn(fraction: float, stop: multiprocessing.synchronize.Event) -> None:
    busy = SLICE * fraction
    while not stop.is_set():
        until = time.perf_counter() + busy
        while time.perf_counter() < until:
            pass
        time.sleep(SLICE - busy)


@contextmanager
def cpu_load(fraction: float) -> Iterator[None]:
    """While inside, `fraction` (0..1) of every core is busy; nothing when fraction is 0."""
    if fraction <= 0:
        yield
        return
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    burners = [
        context.Process(target=_burn, args=(min(fraction, 1.0), stop), daemon=True)
        for _ in range(os.cpu_count() or 1)
    ]
    for burner in burners:
        burner.start()
    try:
        yield
    finally:
        stop.set()
        for burner in burners:
            burner.join(5)
            if burner.is_alive():
                burner.kill()
