"""Pull runs: CRM edits of the two-way fields flow back to members.

For each pulled field three values meet: the CRM's now, ours now, and what we last
pushed. The CRM edited the field when its value differs from what we pushed; we edited
it when ours does. Only the CRM edited: take it. Both edited (a conflict): the field's
owner in the mapping wins. The decision is the pure function `decide`.

The cursor is the last modification time seen, and the query stops at the run's start,
so it never passes the start of the run: edits made while a pull runs are read next time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

import phonenumbers
from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_sync.adapters import make_adapter, mapping_for
from crm_sync.delta import ERASED, canonical, props_hash
from crm_sync.mapping import Crm, FieldMap, Mapping
from crm_sync.port import CrmPort, Pulled
from crm_sync.runs import touch_cursor
from loyalty.app import App
from loyalty.consent import Channel, record_consent
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
            _apply(app, name, mapping, chunk, report)
            chunk = []
    if chunk:
        _apply(app, name, mapping, chunk, report)
    touch_cursor(app, name, SyncDirection.PULL, cursor=report.cursor)
    log.info("crm.pull", extra={"crm": name, "seen": report.seen, "updated": report.updated})
    return report


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _apply(app: App, crm: Crm, mapping: Mapping, chunk: list[Pulled], report: PullReport) -> None:
    keys = [p.key for p in chunk if p.key]
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
        if not _set(session, crm, member, mapped.field, theirs, pulled.modified_at, region):
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
        if value is None or "@" not in value:
            return False
        member.email = value.strip().lower()
        return True
    if field == "birthday":
        return _set_birthday(member, value)
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
