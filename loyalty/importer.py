"""Streaming member import from CSV or JSONL: upsert by external_id, batch by batch.

The file is read as a stream, so memory stays flat however large it is. Each
bad row is reported with its number, field and reason; the good rows land. A bad
row is never more than a row: bytes that are not UTF-8, a NUL character, a huge
cell, or a value the database refuses reject that row alone. Invalid optional
fields are left out and reported as warnings (`loyalty.member_rows`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, StatementError
from sqlalchemy.orm import Session

from loyalty.clock import Clock
from loyalty.db import Database, insert_ignore
from loyalty.errors import FatalError, RowError
from loyalty.member_rows import MemberRow, parse_row, row_key, unusable_text
from loyalty.models import Consent, Member, Referral
from loyalty.referrals import new_referral_code, referral_verdict
from loyalty.settings import Settings
from loyalty.states import ReferralStatus
from loyalty.tiers import tier_for

__all__ = ["ImportReport", "UnusableFileError", "import_members"]

#: Rows upserted per transaction.
BATCH_SIZE = 1000
#: Characters one JSONL line or one CSV cell may hold; past it the whole line is
#: rejected. Cells have their own, lower limit (`loyalty.member_rows.MAX_CELL`).
MAX_LINE = 64 * 1024 * 1024


class UnusableFileError(FatalError):
    """The file as a whole cannot be read as members."""


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


def _read_csv(stream: IO[str]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    # Our own per-cell checks name the field; the reader's limit only bounds memory.
    # The limit is process-wide, so it is put back when the file is done.
    previous = csv.field_size_limit(MAX_LINE)
    try:
        yield from _read_csv_rows(stream)
    finally:
        csv.field_size_limit(previous)


def _read_csv_rows(stream: IO[str]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    reader = csv.DictReader(stream)
    try:
        fieldnames = reader.fieldnames or []
    except csv.Error as exc:
        raise UnusableFileError(f"the header line is not readable CSV ({exc})") from None
    problem = unusable_text(",".join(fieldnames), MAX_LINE)
    if problem is not None:
        raise UnusableFileError(f"the header line {problem}")
    if "external_id" not in [f.strip() for f in fieldnames]:
        raise UnusableFileError(
            "the first line must be a header that names an external_id column "
            f"(found: {', '.join(fieldnames) or 'nothing'})"
        )
    reader.fieldnames = [f.strip() for f in fieldnames]
    while True:
        try:
            raw = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # The reader starts afresh on the next line: only this one is lost.
            yield reader.line_num + 1, f"is not readable CSV ({exc})"
            continue
        if None in raw:
            yield reader.line_num, f"has {len(raw[None])} more cells than the header"
            continue
        yield reader.line_num, raw


def _read_jsonl(stream: IO[str]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE:
            yield number, f"is longer than {MAX_LINE} characters"
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, f"is not valid JSON ({exc.msg} at column {exc.colno})"
            continue
        except (ValueError, RecursionError) as exc:
            # Numbers too long to convert, or nesting too deep to parse.
            yield number, f"is not usable JSON ({type(exc).__name__})"
            continue
        if not isinstance(value, dict):
            yield number, "is not a JSON object"
            continue
        yield number, value


def _reader(path: Path, fmt: str | None) -> Callable[[IO[str]], Iterator[tuple[int, Any]]]:
    fmt = fmt or {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(path.suffix.lower())
    if fmt == "csv":
        return _read_csv
    if fmt == "jsonl":
        return _read_jsonl
    raise UnusableFileError(f"{path.name}: cannot tell the format; name it .csv or .jsonl")


def import_members(
    database: Database,
    path: Path,
    settings: Settings,
    clock: Clock,
    *,
    fmt: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import or update members from `path`; see the module docstring."""
    read = _reader(path, fmt)
    report = ImportReport(file=str(path))
    try:
        raw_stream = path.open("rb")
    except OSError as exc:
        raise UnusableFileError(f"{path}: {exc.strerror}") from None
    # Undecodable bytes become lone surrogates, which reject only the row they are in.
    with (
        raw_stream,
        io.TextIOWrapper(
            raw_stream, encoding="utf-8-sig", errors="surrogateescape", newline=""
        ) as stream,
    ):
        batch: dict[str, tuple[int, MemberRow]] = {}
        for number, raw in read(stream):
            report.rows += 1
            if progress is not None:
                progress(raw_stream.tell())
            row = _parse(number, raw, settings, report)
            if row is None:
                continue
            if row.external_id in batch:
                # A later row for the same member wins within a batch, as it would across.
                _flush(database, batch, settings, clock, report)
                batch = {}
            batch[row.external_id] = (number, row)
            if len(batch) >= BATCH_SIZE:
                _flush(database, batch, settings, clock, report)
                batch = {}
        _flush(database, batch, settings, clock, report)
    return report


def _parse(
    number: int, raw: dict[str, Any] | str, settings: Settings, report: ImportReport
) -> MemberRow | None:
    if isinstance(raw, str):
        report.rejected.append(Problem(number, "*", f"line {raw}"))
        return None
    try:
        row = parse_row(raw, phone_region=settings.default_phone_region)
    except ExceptionGroup as group:
        external_id = row_key(raw)
        for error in group.exceptions:
            assert isinstance(error, RowError)
            report.rejected.append(Problem(number, error.field, error.reason, external_id))
        return None
    for warning in row.warnings:
        report.warnings.append(Problem(number, warning.field, warning.reason, row.external_id))
    return row


def _flush(
    database: Database,
    batch: dict[str, tuple[int, MemberRow]],
    settings: Settings,
    clock: Clock,
    report: ImportReport,
) -> None:
    """Write one batch; when the database refuses it, write row by row to find the culprit."""
    if not batch:
        return
    try:
        report.merge(_write(database, batch, settings, clock, report.file))
        return
    except (StatementError, UnicodeEncodeError) as exc:
        if _not_the_rows_fault(exc):
            raise
    for external_id, (number, row) in batch.items():
        try:
            single = {external_id: (number, row)}
            report.merge(_write(database, single, settings, clock, report.file))
        except (StatementError, UnicodeEncodeError) as exc:
            if _not_the_rows_fault(exc):
                raise
            report.rejected.append(Problem(number, "*", _refusal(exc), external_id))


def _not_the_rows_fault(exc: Exception) -> bool:
    """Lost connections, lock timeouts and the like: retrying row by row cannot help."""
    return isinstance(exc, OperationalError | InterfaceError)


def _refusal(exc: Exception) -> str:
    # Only the error's class: the driver's message may quote the row's values.
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return f"the database refused the row ({type(cause).__name__})"


def _write(
    database: Database,
    batch: dict[str, tuple[int, MemberRow]],
    settings: Settings,
    clock: Clock,
    file: str,
) -> ImportReport:
    """Upsert one batch in one transaction; returns what it did (applied once committed)."""
    report = ImportReport(file=file)
    now = clock.now()
    with database.transaction() as session:
        existing = {
            m.external_id: m
            for m in session.scalars(select(Member).where(Member.external_id.in_(list(batch))))
        }
        new_rows, changes, consents = [], [], []
        for external_id, (_, row) in batch.items():
            member = existing.get(external_id)
            if member is None:
                new_rows.append(_new_member(row, settings, now))
                continue
            change = _diff(member, row)
            for channel in ("email", "sms"):
                wanted = getattr(row, f"{channel}_consent")
                if wanted is not None and wanted != getattr(member, f"{channel}_consent"):
                    change[f"{channel}_consent"] = wanted
                    consents.append(_consent(member.id, channel, wanted, now))
            if change:
                changes.append({"id": member.id, "updated_at": now, **change})
                report.updated += 1
            else:
                report.unchanged += 1
        if new_rows:
            # Plain executemany, then one lookup: RETURNING over many rows is slow on SQLite.
            session.execute(insert(Member), new_rows)
            created = session.execute(
                select(Member.id, Member.external_id).where(
                    Member.external_id.in_([r["external_id"] for r in new_rows])
                )
            ).all()
            report.created += len(created)
            for member_id, external_id in created:
                row = batch[external_id][1]
                for channel in ("email", "sms"):
                    wanted = getattr(row, f"{channel}_consent")
                    if wanted is not None:
                        consents.append(_consent(member_id, channel, wanted, now))
        if changes:
            session.execute(update(Member), changes)
        if consents:
            session.execute(insert(Consent), consents)
        _link_referrals(session, batch, now, report)
    return report


def _new_member(row: MemberRow, settings: Settings, now: Any) -> dict[str, Any]:
    return {
        "external_id": row.external_id,
        "email": None,
        "phone": None,
        "first_name": None,
        "last_name": None,
        "locale": None,
        "time_zone": None,
        "birth_year": None,
        "birth_month": None,
        "birth_day": None,
        **row.fields,
        "tier": tier_for(0, settings.tier_thresholds),
        "points_balance": 0,
        "lifetime_points": 0,
        "referral_code": new_referral_code(),
        "orders_count": 0,
        "email_consent": row.email_consent,
        "sms_consent": row.sms_consent,
        "attributes": row.attributes,
        "enrolled_at": now,
        "created_at": now,
        "updated_at": now,
    }


def _diff(member: Member, row: MemberRow) -> dict[str, Any]:
    change = {k: v for k, v in row.fields.items() if getattr(member, k) != v}
    if row.attributes:
        merged = {**member.attributes, **row.attributes}
        if merged != member.attributes:
            change["attributes"] = merged
    return change


def _consent(member_id: int, channel: str, granted: bool, now: Any) -> dict[str, Any]:
    return {
        "member_id": member_id,
        "channel": channel,
        "purpose": "marketing",
        "granted": granted,
        "source": "import",
        "at": now,
    }


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
