"""Entering the members a tick found due, a batch per statement, and queueing their first steps.

Date and cron ticks can find thousands of members due at once (today's
birthdays, a weekly newsletter's audience). Each batch is entered by
`enrollments.enter_all` in one transaction — one insert whose ``ON CONFLICT DO
NOTHING`` on (journey, member, occurrence) leaves out whoever another tick or
scheduler entered first — and, once committed, its new enrollments are handed
to the workers a few in each message, so the time grows with the members due,
not with the messages queued or the members in the program. The wake-up tick and
the relay hand their rows to the workers the same way (`run_in_batches`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from itertools import islice
from typing import TypeVar

from automations.enrollments import Entrant, enter_all
from automations.versions import Published
from loyalty.app import App

__all__ = [
    "ENTER_BATCH",
    "RUN_BATCH",
    "batch_size",
    "chunks",
    "enter_in_batches",
    "run_in_batches",
    "worker_threads",
]

_T = TypeVar("_T")

#: Members entered per statement and transaction.
ENTER_BATCH = 1000
#: New enrollments per queued message: few messages to queue, yet one for every worker thread.
RUN_BATCH = 100


def enter_in_batches(
    app: App,
    published: Published,
    entrants: Iterable[Entrant],
    run: Callable[[list[int]], None],
    *,
    now: datetime,
) -> int:
    """Enter `entrants` a batch at a time; `run` the new enrollments of each committed batch.

    Returns how many entered. Entrants are taken in member order, so two
    schedulers entering the same members at once wait on each other's rows in
    the same order and never deadlock.
    """
    entered = 0
    for batch in chunks(sorted(entrants, key=lambda e: (e.member_id, e.occurrence)), ENTER_BATCH):
        with app.database.transaction() as session:
            new = enter_all(session, published, batch, now=now, settings=app.settings)
        run_in_batches(new, run, spread=worker_threads(app))
        entered += len(new)
    return entered


def run_in_batches(
    ids: Sequence[int], run: Callable[[list[int]], None], *, spread: int = 1
) -> None:
    """Hand `ids` to `run` RUN_BATCH at a time, or fewer, so that they make `spread`
    batches when there are that many: a few dozen due together still keep every worker
    thread busy rather than one."""
    for batch in chunks(ids, batch_size(len(ids), spread)):
        run(batch)


def batch_size(count: int, spread: int) -> int:
    """Rows per batch for `count` rows: RUN_BATCH, or fewer so that they make `spread` batches."""
    return max(1, min(RUN_BATCH, -(-count // max(spread, 1))))


def worker_threads(app: App) -> int:
    """The worker threads the settings give (processes times threads): how many batches to spread
    work that comes due together over."""
    return app.settings.worker_processes * app.settings.worker_threads


def chunks(values: Iterable[_T], size: int) -> Iterator[list[_T]]:
    """`values` in lists of `size` (the last one shorter)."""
    iterator = iter(values)
    while batch := list(islice(iterator, size)):
        yield batch
