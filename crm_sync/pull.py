"""Pull runs: CRM edits of the two-way fields flow back to members.

For each pulled field three values meet: the CRM's now, ours now, and what we last
pushed. The CRM edited the field when its value differs from what we pushed; we edited
it when ours does. Only the CRM edited: take it. Both edited (a conflict): the field's
owner in the mapping wins. The decision is the pure function `decide`.

The cursor is the last modification time seen, and the query stops at the run's start,
so it never passes the start of the run: edits made while a pull runs are read next time.

A CRM holds what its users typed. A value we cannot store (a NUL character, text that
is not UTF-8, longer than the member's column) is an invalid value of that contact:
counted, logged without the value, and the pull goes on. Should the database still
refuse a chunk, it is applied contact by contact and only the refused contact is left.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

import phonenumbers
from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError, StatementError
from sqlalchemy.orm import Session

from crm_sync.adapters import make_adapter, mapping_for
from crm_sync.delta import ERASED, canonical, props_hash
from crm_sync.mapping import Crm, FieldMap, Mapping
from crm_sync.port import CrmPort, Pulled
from crm_sync.runs import touch_cursor
from loyalty.app import App
from loyalty.consent import Channel, record_consent
from loyalty.member_rows import MAX_CELL, unusable_text
from loyalty.metrics import CRM_RECORDS
from loyalty.models import CrmLink, Member, SyncCursor
from loyalty.states import SyncDirection

__all__ = ["PullReport", "decide", "run_pull"]

log = logging.getLogger("crm_sync")

#: Pulled contacts applied per transaction (the cursor moves with each).
CHUNK = 200

Decision = Literal["same", "ours", "take", "keep"]


@dataclass
class PullReport:
    crm: str
    seen: int = 0
    updated: int = 0
    conflicts_kept: int = 0
    unknown: int = 0
    invalid: int = 0
    cursor: str | None = None

    def summary(self) -> str:
        return (
            f"{self.crm}: {self.seen} contacts read, {self.updated} members updated, "
            f"{self.conflicts_kept} conflicts kept ours, {self.unknown} not ours, "
            f"{self.invalid} invalid values; cursor {self.cursor}"
        )


def decide(
    theirs: str | None, ours: str | None, pushed: str | None, owner: str, known: bool
) -> Decision:
    """What to do with one pulled field (all values canonical texts).

    `known` is False when we never pushed to this contact: both sides count as edited.
    """
    if theirs == ours:
        return "same"
    crm_edited = not known or theirs != pushed
    we_edited = not known or ours != pushed
    if not crm_edited:
        return "ours"  # our newer value goes out with the next push
    if not we_edited or owner == "crm":
        return "take"
    return "keep"


def run_pull(app: App, crm: str, *, adapter: CrmPort | None = None) -> PullReport:
    """Apply CRM edits made since the cursor and before this run started."""
    mapping = mapping_for(app.settings)
    adapter = adapter or make_adapter(app, crm, mapping)
    name: Crm = adapter.name
    started = app.clock.now()
    with app.database.transaction() as session:
        row = session.get(SyncCursor, (name, SyncDirection.PULL))
        since = _parse(row.cursor) if row is not None and row.cursor else None
    report = PullReport(name, cursor=since.isoformat() if since else None)
    chunk: list[Pulled] = []
    for pulled in adapter.pull(since, started):
        chunk.append(pulled)
        if len(chunk) >= CHUNK:
            _apply_chunk(app, name, mapping, chunk, report)
            chunk = []
    if chunk:
        _apply_chunk(app, name, mapping, chunk, report)
    touch_cursor(app, name, SyncDirection.PULL, cursor=report.cursor)
    CRM_RECORDS.labels(name, "pull", "seen").inc(report.seen)
    CRM_RECORDS.labels(name, "pull", "updated").inc(report.updated)
    log.info("crm.pull", extra={"crm": name, "seen": report.seen, "updated": report.updated})
    return report


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _apply_chunk(
    app: App, crm: Crm, mapping: Mapping, chunk: list[Pulled], report: PullReport
) -> None:
    """Apply a chunk in one transaction; if the database refuses it, one contact at a time."""
    before = dataclasses.replace(report)
    try:
        _apply(app, crm, mapping, chunk, report)
        return
    except (StatementError, UnicodeEncodeError) as exc:
        if isinstance(exc, OperationalError | InterfaceError):
            raise  # the database is unwell, not the values: the run fails and is retried
    _restore(report, before)
    for pulled in chunk:
        before = dataclasses.replace(report)
        try:
            _apply(app, crm, mapping, [pulled], report)
        except (StatementError, UnicodeEncodeError) as exc:
            if isinstance(exc, OperationalError | InterfaceError):
                raise
            _restore(report, before)
            report.seen += 1
            report.invalid += 1
            # The error's class only: the driver's message may quote the value.
            cause = getattr(exc, "orig", None) or exc
            log.warning(
                "crm.pull_refused",
                extra={"crm": crm, "crm_id": pulled.crm_id, "error": type(cause).__name__},
            )


def _restore(report: PullReport, saved: PullReport) -> None:
    """Undo the counts of work that was rolled back."""
    for item in dataclasses.fields(report):
        setattr(report, item.name, getattr(saved, item.name))


def _apply(app: App, crm: Crm, mapping: Mapping, chunk: list[Pulled], report: PullReport) -> None:
    keys = [p.key for p in chunk if p.key and _usable_key(p.key)]
    fields = mapping.pulled(crm)
    now = app.clock.now()
    region = app.settings.default_phone_region
    with app.database.transaction() as session:
        members = {
            m.external_id: m
            for m in session.scalars(select(Member).where(Member.external_id.in_(keys)))
        }
        links = {
            link.member_id: link
            for link in session.scalars(
                select(CrmLink).where(
                    CrmLink.crm == crm, CrmLink.member_id.in_([m.id for m in members.values()])
                )
            )
        }
        for pulled in chunk:
            report.seen += 1
            if pulled.key and not _usable_key(pulled.key):
                report.invalid += 1
                log.warning(
                    "crm.pull_invalid", extra={"crm": crm, "crm_id": pulled.crm_id, "field": "key"}
                )
                continue
            member = members.get(pulled.key or "")
            if member is None or member.erased_at is not None:
                report.unknown += 1
                continue
            link = links.get(member.id)
            if link is not None and link.pushed_hash == ERASED:
                continue
            if _apply_one(session, crm, member, link, fields, pulled, report, now, region):
                report.updated += 1
        # The cursor only moves with the work it covers, and never past the run's start.
        pull = SyncDirection.PULL
        row = session.get(SyncCursor, (crm, pull)) or SyncCursor(crm=crm, direction=pull)
        session.add(row)
        report.cursor = max(p.modified_at for p in chunk).isoformat()
        row.cursor = report.cursor


def _apply_one(
    session: Session,
    crm: Crm,
    member: Member,
    link: CrmLink | None,
    fields: Iterable[FieldMap],
    pulled: Pulled,
    report: PullReport,
    now: datetime,
    region: str,
) -> bool:
    pushed = dict(link.pushed_values or {}) if link is not None else {}
    known = link is not None and link.pushed_values is not None
    changed = False
    for mapped in fields:
        name = mapped.name_in(crm)
        assert name is not None
        theirs = pulled.props.get(name)
        ours = canonical(mapped.type, getattr(member, mapped.field))
        verdict = decide(theirs, ours, pushed.get(name), mapped.owner, known)
        if verdict == "keep":
            report.conflicts_kept += 1
            log.info(
                "crm.pull_conflict_kept",
                extra={"crm": crm, "member_id": member.id, "field": mapped.field},
            )
        if verdict != "take":
            continue
        if not _storable(theirs) or not _set(
            session, crm, member, mapped.field, theirs, pulled.modified_at, region
        ):
            report.invalid += 1
            log.warning(
                "crm.pull_invalid",
                extra={"crm": crm, "member_id": member.id, "field": mapped.field},
            )
            continue
        changed = True
        pushed[name] = theirs
    if changed:
        member.updated_at = now
        if link is not None and link.pushed_values is not None:
            # The CRM already holds these values: the next push need not send them back.
            link.pushed_values = pushed
            link.pushed_hash = props_hash(pushed)
    return changed


def _usable_key(key: str) -> bool:
    return unusable_text(key, _longest("external_id")) is None


def _storable(value: str | None) -> bool:
    """Whether a database can hold this text at all (no NUL, UTF-8, not huge)."""
    return value is None or unusable_text(value) is None


def _fits(field: str, value: str) -> bool:
    """Whether the member's column is long enough for the value as it will be stored."""
    return len(value) <= _longest(field)


def _longest(field: str) -> int:
    column = Member.__table__.columns.get(field)
    length = getattr(column.type, "length", None) if column is not None else None
    return length if isinstance(length, int) else MAX_CELL


def _set(
    session: Session,
    crm: Crm,
    member: Member,
    field: str,
    value: str | None,
    at: datetime,
    region: str,
) -> bool:
    """Apply one CRM value to the member; False when the value is unusable."""
    if field in ("email_consent", "sms_consent"):
        if value is None:
            return False
        channel: Channel = "email" if field == "email_consent" else "sms"
        record_consent(session, member, channel, value == "true", source=crm, at=at)
        return True
    if field == "phone":
        if value is None:
            member.phone = None
            return True
        try:
            number = phonenumbers.parse(value, None if value.startswith("+") else region)
        except phonenumbers.NumberParseException:
            return False
        if not phonenumbers.is_valid_number(number):
            return False
        member.phone = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        return True
    if field == "email":
        if value is None or "@" not in value or not _fits(field, value.strip().lower()):
            return False
        member.email = value.strip().lower()
        return True
    if field == "birthday":
        return _set_birthday(member, value)
    if value is not None and not _fits(field, value):
        return False
    setattr(member, field, value)
    return True


def _set_birthday(member: Member, value: str | None) -> bool:
    if value is None:
        member.birth_year = member.birth_month = member.birth_day = None
        return True
    try:
        if value.startswith("--"):
            month, day = (int(p) for p in value[2:].split("-"))
            date(2000, month, day)
            member.birth_year, member.birth_month, member.birth_day = None, month, day
        else:
            parsed = date.fromisoformat(value[:10])
            member.birth_year, member.birth_month, member.birth_day = (
                parsed.year,
                parsed.month,
                parsed.day,
            )
    except ValueError:
        return False
    return True
