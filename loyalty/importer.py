"""Streaming member import from CSV or JSONL: upsert by external_id, batch by batch.

The file is read as a stream, so memory stays flat however large it is. Each
bad row is reported with its number, field and reason; the good rows land. A bad
row is never more than a row: bytes that are not UTF-8, a NUL character, a huge
cell, or a value the database refuses reject that row alone. Invalid optional
fields are left out and reported as warnings (`loyalty.member_rows`).
"""

from __future__ import annotations

import functools
import gc
import hashlib
import io
import os
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import select, update
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    StatementError,
)
from sqlalchemy.orm import Session

from loyalty.clock import Clock
from loyalty.db import Database, insert_ignore
from loyalty.import_backends import finished_rows
from loyalty.import_files import Line, Raw, UnusableFileError, reader_for
from loyalty.import_parsers import ParsedBatch, Parsers, collections_per_batch
from loyalty.import_processes import checkpoint, forked, in_memory
from loyalty.import_writer import Parsed, unchanged_keys, write_batch
from loyalty.member_rows import (
    MemberRow,
    member_row,
    row_key,
)
from loyalty.models import Member, Referral
from loyalty.referrals import referral_verdict
from loyalty.settings import Settings
from loyalty.states import ReferralStatus
from loyalty.tiers import tier_for

__all__ = ["ImportReport", "UnusableFileError", "import_members"]

#: Rows upserted per transaction (and parsed per task). Larger batches spread the fixed
#: cost of a transaction (lookups, the temporary table, the commit) over more rows; a
#: SQLite batch holds the write lock for a few hundred milliseconds.
BATCH_SIZE = 5000
#: Processes that parse and write batches: one per core, and one more, which parses a
#: batch while one process writes and another has a parsed batch waiting for its turn.
PARSE_WORKERS = (os.cpu_count() or 1) + 1
#: Part of every row digest: bump it when `loyalty.member_rows` changes what a row
#: becomes, so that the next import parses every row again.
RULES_VERSION = "1"
#: Why a row of an erased member is rejected.
ERASED = (
    "belongs to an erased member (GDPR): nothing of theirs is imported again; leave the row out"
)


@dataclass
class Problem:
    row: int
    field: str
    reason: str
    external_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "field": self.field,
            "reason": self.reason,
            "external_id": self.external_id,
        }


@dataclass
class ImportReport:
    file: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def merge(self, other: ImportReport) -> None:
        """Add the counts and warnings of one committed batch."""
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.rejected += other.rejected
        self.warnings += other.warnings

    @property
    def rejected_rows(self) -> int:
        return len({p.row for p in self.rejected})

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected_rows": self.rejected_rows,
            "rejected": [p.as_dict() for p in self.rejected],
            "warnings": [p.as_dict() for p in self.warnings],
        }


def import_members(
    database: Database,
    path: Path,
    settings: Settings,
    clock: Clock,
    *,
    fmt: str | None = None,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> ImportReport:
    """Import or update members from `path`; see the module docstring.

    `workers` parsing processes (default `PARSE_WORKERS`) parse batches while this
    one writes; 1 parses here.
    """
    read = reader_for(path, fmt)
    report = ImportReport(file=str(path))
    try:
        raw_stream = path.open("rb")
    except OSError as exc:
        raise UnusableFileError(f"{path}: {exc.strerror}") from None
    region = settings.default_phone_region
    context = f"{RULES_VERSION}\x1e{region}"
    # Into a table with no member yet, no row can be one a last import applied: the rows
    # are not looked up, and a batch's members are written as new without looking for
    # them (a member the file names twice, or someone else adds meanwhile, makes that
    # write fail, and the batch is then written as any other).
    look_up = _has_members(database)
    # Undecodable bytes become lone surrogates, which reject only the row they are in.
    with (
        raw_stream,
        io.TextIOWrapper(
            raw_stream, encoding="utf-8-sig", errors="surrogateescape", newline=""
        ) as stream,
        Parsers(
            PARSE_WORKERS if workers is None else workers,
            region,
            database.engine.dialect.name,
            functools.partial(_prepare, report.file, settings, clock, database.engine.dialect.name),
            functools.partial(_store, database, settings, not look_up),
            forked=functools.partial(forked, database),
            write_in_pool=not in_memory(database),
            settle=functools.partial(checkpoint, database) if database.is_sqlite else None,
        ) as parsers,
        collections_per_batch(),
    ):
        header: list[str] = []
        lines = read(stream, header)
        if progress is not None:
            lines = _reporting(lines, lambda: progress(raw_stream.tell()))
        pending: deque[_Batch] = deque()
        for batch in _batches(lines, header):
            report.rows += batch.lines
            # Rows of batches not yet written are parsed whatever their digest says.
            in_flight = set().union(*(b.keys for b in pending)) if look_up else set()
            _skip_unchanged(database, batch, context, in_flight, look_up=look_up)
            batch.outcome = parsers.submit(batch.to_parse, batch.digests, header, BATCH_SIZE)
            pending.append(batch)
            while len(pending) > parsers.depth:
                _finish(pending.popleft(), report)
                gc.collect(1)
        while pending:
            _finish(pending.popleft(), report)
    report.rejected.sort(key=lambda p: p.row)
    report.warnings.sort(key=lambda p: p.row)
    return report


def _reporting(lines: Iterator[Line], tick: Callable[[], None]) -> Iterator[Line]:
    for line in lines:
        tick()
        yield line


@dataclass
class _Batch:
    """Up to `BATCH_SIZE` rows, no member twice, on their way from the file to the database."""

    #: Lines that are no row, and why.
    unusable: list[tuple[int, str]] = field(default_factory=list)
    #: Rows: number, raw row, raw text, external_id (when usable).
    rows: list[tuple[int, Raw, str, str | None]] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)
    #: Rows to parse, and beside them the digest of each one's raw content.
    to_parse: list[tuple[int, Raw]] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)
    unchanged: int = 0
    #: What the batch's rows did, once they are written.
    outcome: Callable[[], ImportReport] | None = None

    @property
    def lines(self) -> int:
        return len(self.unusable) + len(self.rows)


def _batches(lines: Iterator[Line], header: list[str]) -> Iterator[_Batch]:
    batch = _Batch()
    at = -1  # where a CSV line's external_id is (the last such column, as a dict keeps)
    for number, raw, text in lines:
        if isinstance(raw, str):
            batch.unusable.append((number, raw))
            continue
        if isinstance(raw, dict):
            key = row_key(raw.get("external_id"))
        else:
            if at < 0:
                at = len(header) - 1 - header[::-1].index("external_id")
            key = row_key(raw[at] if at < len(raw) else None)
        if key is not None and key in batch.keys:
            # A later row for the same member wins within a batch, as it would across.
            yield batch
            batch = _Batch()
        batch.rows.append((number, raw, text, key))
        if key is not None:
            batch.keys.add(key)
        if len(batch.rows) >= BATCH_SIZE:
            yield batch
            batch = _Batch()
    if batch.lines:
        yield batch


def _has_members(database: Database) -> bool:
    with database.reading() as session:
        return session.execute(select(Member.id).limit(1)).first() is not None


def _skip_unchanged(
    database: Database, batch: _Batch, context: str, in_flight: set[str], *, look_up: bool
) -> None:
    """Find the rows the last import already applied (when `look_up`); the others are to
    parse."""
    row_digests = [
        hashlib.blake2b(
            f"{context}\x1e{text}".encode("utf-8", "surrogatepass"), digest_size=16
        ).hexdigest()
        for _, _, text, _ in batch.rows
    ]
    if not look_up:
        batch.to_parse = [(number, raw) for number, raw, _, _ in batch.rows]
        batch.digests = row_digests
        return
    digests = {
        key: digest
        for (_, _, _, key), digest in zip(batch.rows, row_digests, strict=True)
        if key is not None and key not in in_flight
    }
    with database.reading() as session:
        known = unchanged_keys(session, digests)
    for (number, raw, _, key), digest in zip(batch.rows, row_digests, strict=True):
        if key in known:
            batch.unchanged += 1
        else:
            batch.to_parse.append((number, raw))
            batch.digests.append(digest)


def _finish(batch: _Batch, report: ImportReport) -> None:
    """Report what the batch did, once it is written."""
    assert batch.outcome is not None
    report.unchanged += batch.unchanged
    for number, reason in batch.unusable:
        report.rejected.append(Problem(number, "*", f"line {reason}"))
    report.merge(batch.outcome())


#: A parsed batch's problems, its good rows ready to write, and the time they are written at.
_Ready = tuple["ImportReport", list[Parsed], datetime]


def _prepare(
    file: str,
    settings: Settings,
    clock: Clock,
    backend: str,
    batch: ParsedBatch,
    digests: list[str],
) -> _Ready:
    """Report a parsed batch's problems and make its good rows ready (`digests` beside
    them): each one's row should it be a new member, in full but for its id."""
    report = ImportReport(file=file)
    ready: list[Parsed] = []
    parsed, news = batch
    for (number, key, fields, rejected, warnings), new, digest in zip(
        parsed, news, digests, strict=True
    ):
        for name, reason in rejected:
            report.rejected.append(Problem(number, name, reason, key))
        if fields is None:
            continue
        for name, reason in warnings:
            report.warnings.append(Problem(number, name, reason, key))
        ready.append(Parsed(number, member_row(fields), None if warnings else digest, new))
    now = clock.now()
    made = [(p, p.new) for p in ready if p.new is not None]
    rows = finished_rows(
        backend, [(new, p.digest) for p, new in made], now, tier_for(0, settings.tier_thresholds)
    )
    for (p, _), row in zip(made, rows, strict=True):
        p.new = row
    return report, ready, now


def _store(database: Database, settings: Settings, all_new: bool, ready: _Ready) -> ImportReport:
    """Write a batch's good rows (`all_new`: see `_flush`); returns what the batch did."""
    report, rows, now = ready
    _flush(database, rows, settings, now, report, all_new=all_new)
    return report


def _flush(
    database: Database,
    batch: list[Parsed],
    settings: Settings,
    now: datetime,
    report: ImportReport,
    *,
    all_new: bool = False,
) -> None:
    """Write one batch; when the database refuses it, write row by row to find the culprit.

    With `all_new` (the import started into a table with no member), the batch is first
    written as new members without looking them up; when one is there after all, that
    write fails on its external_id and the batch is written as any other.
    """
    if not batch:
        return
    if all_new:
        try:
            report.merge(_write(database, batch, settings, now, report.file, all_new=True))
            return
        except _CONFLICTS:
            pass
    try:
        report.merge(_write(database, batch, settings, now, report.file))
        return
    except _REFUSALS as exc:
        if _not_the_rows_fault(exc):
            raise
    for parsed in batch:
        # Made again, with a referral code drawn again: the batch's may have been taken.
        parsed.new = None
        try:
            report.merge(_write(database, [parsed], settings, now, report.file))
        except _REFUSALS as exc:
            if _not_the_rows_fault(exc):
                raise
            report.rejected.append(
                Problem(parsed.number, "*", _refusal(exc), parsed.row.external_id)
            )


#: What the database (or the driver, on the way to it) may say about a row's values.
_REFUSALS = (StatementError, UnicodeEncodeError, psycopg.Error)
#: What it says when a row takes a unique value another row has (an external_id).
_CONFLICTS = (IntegrityError, psycopg.IntegrityError)


def _not_the_rows_fault(exc: Exception) -> bool:
    """Lost connections, lock timeouts and the like: retrying row by row cannot help."""
    return isinstance(
        exc,
        OperationalError | InterfaceError | psycopg.OperationalError | psycopg.InterfaceError,
    )


def _refusal(exc: Exception) -> str:
    # Only the error's class: the driver's message may quote the row's values.
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return f"the database refused the row ({type(cause).__name__})"


def _write(
    database: Database,
    batch: list[Parsed],
    settings: Settings,
    now: datetime,
    file: str,
    *,
    all_new: bool = False,
) -> ImportReport:
    """Upsert one batch in one transaction; returns what it did (applied once committed)."""
    report = ImportReport(file=file)
    with database.transaction() as session:
        tier = tier_for(0, settings.tier_thresholds)
        result = write_batch(session, batch, now=now, tier=tier, all_new=all_new)
        if any(p.row.referred_by_code for p in batch):
            erased = {id(parsed) for parsed in result.erased}
            written = {p.row.external_id: (p.number, p.row) for p in batch if id(p) not in erased}
            _link_referrals(session, written, now, report)
    report.created, report.updated, report.unchanged = (
        result.created,
        result.updated,
        result.unchanged,
    )
    for parsed in result.erased:
        report.rejected.append(
            Problem(parsed.number, "external_id", ERASED, parsed.row.external_id)
        )
    return report


def _link_referrals(
    session: Session, batch: dict[str, tuple[int, MemberRow]], now: Any, report: ImportReport
) -> None:
    wanted = {eid: (n, r.referred_by_code) for eid, (n, r) in batch.items() if r.referred_by_code}
    if not wanted:
        return
    codes = {code for _, code in wanted.values()}
    referrers = {
        code: (member_id, email)
        for member_id, code, email in session.execute(
            select(Member.id, Member.referral_code, Member.email).where(
                Member.referral_code.in_(codes)
            )
        )
    }
    referees = session.execute(
        select(Member.id, Member.external_id, Member.email, Member.referred_by_id).where(
            Member.external_id.in_(list(wanted))
        )
    ).all()
    rows, links = [], []
    for member_id, external_id, email, referred_by_id in referees:
        number, code = wanted[external_id]
        if code not in referrers:
            report.warnings.append(
                Problem(
                    number, "referred_by_code", f"no member has referral code {code!r}", external_id
                )
            )
            continue
        referrer_id, referrer_email = referrers[code]
        if referrer_id == member_id:
            report.warnings.append(
                Problem(number, "referred_by_code", "a member cannot refer themselves", external_id)
            )
            continue
        if referred_by_id is not None:
            continue
        verdict = referral_verdict(email, referrer_email)
        links.append({"id": member_id, "referred_by_id": referrer_id})
        rows.append(
            {
                "referrer_id": referrer_id,
                "referee_id": member_id,
                "code": code,
                "status": ReferralStatus.PENDING,  # checked again at the first order
                "fraud_verdict": verdict,
                "created_at": now,
            }
        )
    if links:
        session.execute(update(Member), links)
        insert_ignore(session, Referral, rows, ["referee_id"])
