"""Parsing an import's batches in a pool of processes while the importing one writes."""

from __future__ import annotations

import gc
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any

from loyalty.import_format import NewMember, new_member
from loyalty.member_rows import ParsedRow, parse_rows

__all__ = ["ParsedBatch", "Parsers", "collections_per_batch"]

#: Numbered rows to parse: JSON objects, or the cells of CSV lines.
Rows = list[tuple[int, dict[str, Any] | list[str]]]
#: A batch's parsed rows, and beside each kept one its columns should it be a new member.
ParsedBatch = tuple[list[ParsedRow], list[NewMember | None]]


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
    """`parse_rows`, and each kept row as a new member for `backend`'s driver."""
    parsed = parse_rows(rows, region, names)
    news: list[NewMember | None] = []
    for _, _, fields, _, _ in parsed:
        if fields is None:
            news.append(None)
            continue
        external_id, values, email_consent, sms_consent, _, attributes = fields
        news.append(
            new_member(backend, external_id, values, email_consent, sms_consent, attributes)
        )
    return parsed, news


def _parse_batch(rows: Rows, names: list[str], region: str, backend: str) -> ParsedBatch:
    """`parse_batch` in a parsing process, collecting garbage once for the batch."""
    with collections_per_batch():
        parsed = parse_batch(rows, names, region, backend)
    gc.collect(1)
    return parsed


class Parsers:
    """Parsing in a pool of processes, started at the first full batch or the second one
    (small files need none)."""

    def __init__(self, workers: int, region: str, backend: str) -> None:
        self.workers = workers
        self.region = region
        #: The database the rows go to (`sqlite` or `postgresql`).
        self.backend = backend
        self.pool: ProcessPoolExecutor | None = None
        self.submitted = 0

    @property
    def depth(self) -> int:
        """Batches that may wait to be written while they are parsed."""
        return 0 if self.pool is None else self.workers + 1

    def submit(self, rows: Rows, names: list[str], full: int) -> Callable[[], ParsedBatch]:
        """Parse `rows` (CSV cells named by `names`, or JSON objects), in the pool once it
        is started; `full` is a full batch's size."""
        self.submitted += 1
        if self.pool is None and self.workers > 1 and (self.submitted > 1 or len(rows) >= full):
            # Forked: the parsing processes start with the modules loaded and never run
            # the program's main module again (spawn and forkserver would).
            context = multiprocessing.get_context("fork")
            self.pool = ProcessPoolExecutor(self.workers, mp_context=context)
        if self.pool is None or not rows:
            done = parse_batch(rows, names, self.region, self.backend)
            return lambda: done
        return self.pool.submit(_parse_batch, rows, names, self.region, self.backend).result

    def __enter__(self) -> Parsers:
        return self

    def __exit__(self, *_: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
