"""Ceilings for rate-limited work: the floor a rolling window sets, and a busy machine.

A push to a CRM that allows `limit` calls per rolling `window_s` cannot make `calls`
calls faster than `calls / (limit / window_s)` seconds, however fast the machine: that
floor is the ceiling a push is measured against. A push only reaches it if its own work
(comparing, building bodies, recording answers) hides inside the waits the limit
imposes, which is hardest when other processes want the CPU too: `busy` runs that load
(one spinning process per core by default) while a measure runs.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.synchronize import Event

__all__ = ["busy", "load_average", "rolling_window_floor_s"]


def rolling_window_floor_s(calls: int, limit: int, window_s: float) -> float:
    """The least time `calls` calls take at `limit` calls per `window_s` seconds."""
    return calls * window_s / limit


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as printed next to every figure."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _spin(stop: Event) -> None:
    n = 0
    while not stop.is_set():
        for _ in range(100_000):
            n += 1


@contextmanager
def busy(processes: int | None = None) -> Iterator[int]:
    """Keep `processes` other processes (default: one per core) spinning on the CPU."""
    count = (os.cpu_count() or 1) if processes is None else processes
    stop = multiprocessing.Event()
    spinners = [
        multiprocessing.Process(target=_spin, args=(stop,), daemon=True) for _ in range(count)
    ]
    for spinner in spinners:
        spinner.start()
    try:
        yield count
    finally:
        stop.set()
        for spinner in spinners:
            spinner.join(5)
