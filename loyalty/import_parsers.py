"""Parsing and writing an import's batches in a pool of processes, in the file's order.

The importing process reads the file and hands out batches; each parsing process
parses its batch and then, when every batch before it is written, writes it in its
own transaction. Parsing overlaps the writes, and the importing process does no
per-row work beyond reading. A database only this process can reach (SQLite in
memory) is written by the importing process instead.
"""

from __future__ import annotations

import gc
import marshal
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from loyalty.import_format import NewMember, new_member
from loyalty.member_rows import ParsedRow, parse_rows
from loyalty.plain_rows import csv_layout, plain_row

__all__ = ["ParsedBatch", "Parsers", "Rows", "collections_per_batch"]

#: Numbered rows to parse: JSON objects, or the cells of CSV lines.
Rows = list[tuple[int, dict[str, Any] | list[str]]]
#: A batch's parsed rows, and beside each kept one its columns should it be a new member.
ParsedBatch = tuple[list[ParsedRow], list[NewMember | None]]
#: A parsed batch made ready to write, and what writing it gives back.
P = TypeVar("P")
R = TypeVar("R")


@contextmanager
def collections_per_batch() -> Iterator[None]:
    """The garbage collector runs once a batch rather than every few hundred objects.

    A batch's rows live until it is written, so the collector would look at them
    again and again for nothing; cyclic garbage of a batch is still collected.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_batch(rows: Rows, names: list[str], region: str, backend: str) -> ParsedBatch:
    """`parse_rows`, and each kept row as a new member for `backend`'s driver.

    Plain CSV rows take the one-pass path (`loyalty.plain_rows`), the others
    `parse_rows`: each row's outcome is the same.
    """
    layout = csv_layout(tuple(names)) if names else None
    parsed: list[ParsedRow] = []
    news: list[NewMember | None] = []
    for number, cells in rows:
        fields = None
        if layout is not None and type(cells) is list:
            fields = plain_row(cells, layout, region)
        if fields is None:
            (row,) = parse_rows([(number, cells)], region, names)
            parsed.append(row)
            fields = row[2]
            if fields is None:
                news.append(None)
                continue
        else:
            parsed.append((number, fields[0], fields, [], []))
        external_id, values, email_consent, sms_consent, _, attributes = fields
        news.append(
            new_member(backend, external_id, values, email_consent, sms_consent, attributes)
        )
    return parsed, news


class ImportStoppedError(Exception):
    """An earlier batch failed: the batches after it are not written."""


@dataclass
class _Job(Generic[P, R]):
    """What the pool's processes share, set before they are forked."""

    region: str
    backend: str
    #: Makes a parsed batch ready to write, given its rows' digests.
    prepare: Callable[[ParsedBatch, list[str]], P]
    #: Writes a batch made ready; None when the importing process writes.
    write: Callable[[P], R] | None
    #: The number of the batch whose turn it is to be written (a shared Value).
    turn: Any
    #: Set when a batch failed or the import stopped: no batch is written after it.
    failed: Any
    #: A shared Condition, notified when the turn moves on or the import stops.
    changed: Any
    #: Runs after a batch is written and the turn has moved on (see `Parsers`).
    settle: Callable[[], None] | None = None


_JOB: _Job[Any, Any] | None = None


def _work(batch: bytes, names: list[str], number: int) -> Any:
    """Parse a batch (its rows and their digests, marshalled) in a pool process and make it
    ready; write it when its turn comes."""
    job = _JOB
    assert job is not None
    with collections_per_batch():
        rows, digests = marshal.loads(batch)
        ready = job.prepare(parse_batch(rows, names, job.region, job.backend), digests)
        if job.write is None:
            return ready
        with job.changed:
            job.changed.wait_for(lambda: job.turn.value == number or job.failed.value)
        try:
            if job.failed.value:
                raise ImportStoppedError("an earlier batch failed")
            done = job.write(ready)
        except BaseException:
            job.failed.value = 1
            raise
        finally:
            with job.changed:
                job.turn.value = number + 1
                job.changed.notify_all()
            del ready
            gc.collect(1)
        if job.settle is not None:
            job.settle()
        return done


class Parsers(Generic[P, R]):
    """Parsing and writing in a pool of processes, started at the first full batch or the
    second one (small files need none).

    `prepare` makes a parsed batch ready to write, given its rows' digests, before its
    turn; `write` writes it in its turn; `settle` (if any) runs in a pool process
    after its batch is written and the next batch's turn has come, to do what
    need not hold the others up; `forked` runs first in each pool process (to let go
    of connections the importing process opened).
    """

    def __init__(
        self,
        workers: int,
        region: str,
        backend: str,
        prepare: Callable[[ParsedBatch, list[str]], P],
        write: Callable[[P], R],
        *,
        forked: Callable[[], None],
        write_in_pool: bool = True,
        settle: Callable[[], None] | None = None,
    ) -> None:
        self.workers = workers
        self.region = region
        #: The database the rows go to (`sqlite` or `postgresql`).
        self.backend = backend
        self.prepare = prepare
        self.write = write
        self.forked = forked
        self.write_in_pool = write_in_pool
        self.settle = settle
        self.pool: ProcessPoolExecutor | None = None
        self.submitted = 0

    @property
    def depth(self) -> int:
        """Batches that may wait to be written while they are parsed."""
        return 0 if self.pool is None else self.workers + 1

    def submit(
        self, rows: Rows, digests: list[str], names: list[str], full: int
    ) -> Callable[[], R]:
        """Parse and write `rows` (CSV cells named by `names`, or JSON objects; `digests`
        beside them), in the pool once it is started; `full` is a full batch's size.

        Returns what gives the written batch's outcome, in the order of submission.
        """
        self.submitted += 1
        if self.pool is None and self.workers > 1 and (self.submitted > 1 or len(rows) >= full):
            self._start()
        if self.pool is None:
            # Every batch before this one is written: none is in a pool.
            parsed = parse_batch(rows, names, self.region, self.backend)
            done = self.write(self.prepare(parsed, digests))
            return lambda: done
        # Rows are lists, text and numbers (JSON's at most), which marshal writes and reads
        # at about half the cost of pickle (lone surrogates included).
        batch = marshal.dumps((rows, digests))
        future = self.pool.submit(_work, batch, names, self.submitted)
        if self.write_in_pool:
            return future.result
        return lambda: self.write(future.result())

    def _start(self) -> None:
        global _JOB
        # Forked: the pool's processes start with the modules loaded and never run the
        # program's main module again (spawn and forkserver would).
        context = multiprocessing.get_context("fork")
        changed = context.Condition()
        _JOB = _Job(
            self.region,
            self.backend,
            self.prepare,
            self.write if self.write_in_pool else None,
            context.Value("q", self.submitted, lock=False),
            context.Value("b", 0, lock=False),
            changed,
            self.settle,
        )
        self.pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=self.forked)

    def __enter__(self) -> Parsers[P, R]:
        return self

    def __exit__(self, *_: object) -> None:
        global _JOB
        if self.pool is not None:
            if _JOB is not None:
                # Batches still waiting for their turn are not written.
                with _JOB.changed:
                    _JOB.failed.value = 1
                    _JOB.changed.notify_all()
            self.pool.shutdown(cancel_futures=True)
            _JOB = None
