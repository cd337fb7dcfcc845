"""Member fields for the CRM, read for a page of members at once.

`loyalty.members.member_data` reads one member with a few queries each; pushing 100,000
members that way would spend the run in the database. This module computes the same
fields (plus the CRM-only ones: last birthday bonus, last NPS) with one query per field
for a whole page.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from loyalty.members import first_expiring_day
from loyalty.models import Enrollment, LedgerEntry, Member, Referral, Survey
from loyalty.referrals import referral_link
from loyalty.states import ReferralStatus

__all__ = ["BIRTHDAY_JOURNEY", "MEMBER_FIELDS", "member_values"]

#: The journey whose yearly occurrences are the member's birthday bonuses.
BIRTHDAY_JOURNEY = "birthday_bonus"

_PLAIN = (
    "external_id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "locale",
    "time_zone",
    "birth_month",
    "birth_day",
    "birth_year",
    "birthday",
    "tier",
    "points_balance",
    "lifetime_points",
    "referral_code",
    "orders_count",
    "total_spent",
    "last_order_at",
    "email_consent",
    "sms_consent",
    "enrolled_at",
)
#: Every field a mapping may name.
MEMBER_FIELDS = frozenset(
    {
        *_PLAIN,
        "member_id",
        "points_expiring",
        "points_expiring_at",
        "referral_link",
        "referrals_completed",
        "last_birthday_bonus_year",
        "last_nps_score",
        "last_nps_at",
    }
)


def member_values(
    session: Session,
    members: Sequence[Member],
    *,
    now: datetime,
    public_base_url: str,
    default_zone: str = "UTC",
) -> dict[int, dict[str, Any]]:
    """Member id → field → native value (aware datetimes, ints, Decimals, bools, None)."""
    ids = [m.id for m in members]
    if not ids:
        return {}
    zones = {m.id: m.time_zone or default_zone for m in members}
    expiring = _next_expiring(session, zones, now)
    referrals = dict(
        session.execute(
            select(Referral.referrer_id, func.count(Referral.id))
            .where(Referral.referrer_id.in_(ids), Referral.status == ReferralStatus.COMPLETED)
            .group_by(Referral.referrer_id)
        ).all()
    )
    birthdays = dict(
        session.execute(
            select(Enrollment.member_id, func.max(Enrollment.occurrence))
            .where(Enrollment.member_id.in_(ids), Enrollment.journey_id == BIRTHDAY_JOURNEY)
            .group_by(Enrollment.member_id)
        ).all()
    )
    nps: dict[int, tuple[int | None, datetime | None]] = {}
    for member_id, score, answered_at in session.execute(
        select(Survey.member_id, Survey.score, Survey.answered_at)
        .where(Survey.member_id.in_(ids), Survey.kind == "nps", Survey.answered_at.is_not(None))
        .order_by(Survey.answered_at, Survey.id)
    ):
        nps[member_id] = (score, answered_at)
    values: dict[int, dict[str, Any]] = {}
    for member in members:
        row: dict[str, Any] = {name: getattr(member, name) for name in _PLAIN}
        points, at = expiring.get(member.id, (0, None))
        year = birthdays.get(member.id)
        score, answered = nps.get(member.id, (None, None))
        row.update(
            member_id=member.id,
            points_expiring=points,
            points_expiring_at=at,
            referral_link=referral_link(public_base_url, member.referral_code),
            referrals_completed=int(referrals.get(member.id, 0)),
            last_birthday_bonus_year=int(year) if year and str(year).isdigit() else None,
            last_nps_score=score,
            last_nps_at=answered,
        )
        values[member.id] = row
    return values


def _next_expiring(
    session: Session, zones: dict[int, str], now: datetime
) -> dict[int, tuple[int, datetime]]:
    """Per member: the points expiring on their next local expiry day (as `member_data`)."""
    lots: dict[int, list[tuple[datetime, int]]] = {}
    rows = session.execute(
        select(LedgerEntry.member_id, LedgerEntry.expires_at, LedgerEntry.remaining).where(
            LedgerEntry.member_id.in_(list(zones)),
            LedgerEntry.remaining > 0,
            LedgerEntry.expires_at > now,
        )
    )
    for member_id, expires_at, remaining in rows:
        if expires_at is not None:
            lots.setdefault(member_id, []).append((expires_at, remaining))
    found: dict[int, tuple[int, datetime]] = {}
    for member_id, member_lots in lots.items():
        first = first_expiring_day(member_lots, zones[member_id])
        if first is not None:
            found[member_id] = first
    return found
