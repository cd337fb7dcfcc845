"""Python's garbage collector tuned for the long-running processes that do the work.

`loyalty worker`'s processes, `loyalty serve` and `loyalty run` call `tune_collector`
once started.

A batch of events or emails builds thousands of short-lived objects (ORM rows and
their states, result rows, parameters), and with Python's default thresholds (a
young collection every 700 allocations) the collector walks them again and again:
about a sixth of a worker's CPU in a batch of 1,000 emails. Here the young
generation is collected every `YOUNG_THRESHOLD` allocations, and what the process
built while starting (modules, compiled templates, mappers) is moved out of the
collector's sight (`gc.freeze`), so that full collections no longer walk it.
Objects are still freed as soon as nothing refers to them; only cycles wait longer.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "tune_collector"]

#: Allocations (less deallocations) between two collections of the youngest generation.
YOUNG_THRESHOLD = 20_000
#: Young collections between two of the middle generation, and middle ones between two full.
OLDER_THRESHOLD = 20


def tune_collector() -> None:
    """Freeze what exists now and collect less often; call once the process has started."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, OLDER_THRESHOLD, OLDER_THRESHOLD)
