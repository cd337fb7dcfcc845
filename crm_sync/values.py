"""Member fields for the CRM, read for a page of members at once.

`loyalty.members.member_data` reads one member with a few queries each; pushing 100,000
members that way would spend the run in the database. This module computes the same
fields (plus the CRM-only ones: last birthday bonus, last NPS) with one query per field
for a whole page. `member_rows` reads the page's members as plain rows (no ORM objects,
which would cost more than the rest of the compare).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, func, select
from sqlalchemy.orm import Session

from loyalty.members import first_expiring_day
from loyalty.models import Enrollment, LedgerEntry, Member, Referral, Survey, birthday_text
from loyalty.referrals import referral_link
from loyalty.states import ReferralStatus

__all__ = ["BIRTHDAY_JOURNEY", "MEMBER_FIELDS", "member_columns", "member_rows", "member_values"]

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
#: The member columns read for the CRM, in the order `member_rows` selects them.
_COLUMNS = ("id", *(name for name in _PLAIN if name != "birthday"))
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


def member_rows(
    session: Session, *, after: int, limit: int, fields: Iterable[str] = MEMBER_FIELDS
) -> Sequence[Row[Any]]:
    """Up to `limit` members that are not erased, with ids above `after`, in id order.

    Only the columns `fields` need are read (plus id, time zone and referral code).
    """
    wanted = set(fields)
    if "birthday" in wanted:
        wanted |= {"birth_month", "birth_day", "birth_year"}
    names = ["id", "time_zone", "referral_code"]
    names += [name for name in _COLUMNS if name in wanted and name not in names]
    return session.execute(
        select(*(getattr(Member, name) for name in names))
        .where(Member.id > after, Member.erased_at.is_(None))
        .order_by(Member.id)
        .limit(limit)
    ).all()


def _plain(members: Sequence[Member] | Sequence[Row[Any]]) -> dict[str, list[Any]]:
    """The members' columns by name, one value per member (and their birthday texts when
    the parts were read)."""
    if isinstance(members[0], Member):
        columns = {name: [getattr(m, name) for m in members] for name in _COLUMNS}
    else:
        rows = cast("Sequence[Row[Any]]", members)
        columns = dict(zip(rows[0]._fields, map(list, zip(*rows, strict=True)), strict=True))
    if "birth_month" in columns:
        parts = (columns["birth_month"], columns["birth_day"], columns["birth_year"])
        columns["birthday"] = list(map(birthday_text, *parts))
    return columns


def _among(column: Any, ids: list[int]) -> Any:
    """`column IN ids`; as a range when the ids are dense (a page of members in id order),
    which costs the database and the statement cache far less than a thousand parameters."""
    low, high = min(ids), max(ids)
    if high - low < 2 * len(ids):
        return column.between(low, high)
    return column.in_(ids)


def member_values(
    session: Session,
    members: Sequence[Member] | Sequence[Row[Any]],
    *,
    now: datetime,
    public_base_url: str,
    default_zone: str = "UTC",
) -> dict[int, dict[str, Any]]:
    """Member id → field → native value (aware datetimes, ints, Decimals, bools, None).

    `members` are Member objects or `member_rows` rows.
    """
    columns = member_columns(
        session, members, now=now, public_base_url=public_base_url, default_zone=default_zone
    )
    names = list(columns)
    return {
        values["member_id"]: values
        for values in (
            dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)
        )
    }


def member_columns(
    session: Session,
    members: Sequence[Member] | Sequence[Row[Any]],
    *,
    now: datetime,
    public_base_url: str,
    default_zone: str = "UTC",
) -> dict[str, list[Any]]:
    """As `member_values`, by field: field → one value per member, in the members' order.

    A page compared field by field never builds a dictionary per member.
    """
    if not members:
        return {}
    columns = _plain(members)
    ids: list[int] = columns.pop("id")
    columns["member_id"] = ids
    zones = {
        member_id: zone or default_zone
        for member_id, zone in zip(ids, columns["time_zone"], strict=True)
    }
    expiring = _next_expiring(session, zones, now)
    referrals = dict(
        session.execute(
            select(Referral.referrer_id, func.count(Referral.id))
            .where(_among(Referral.referrer_id, ids), Referral.status == ReferralStatus.COMPLETED)
            .group_by(Referral.referrer_id)
        ).all()
    )
    birthdays = dict(
        session.execute(
            select(Enrollment.member_id, func.max(Enrollment.occurrence))
            .where(_among(Enrollment.member_id, ids), Enrollment.journey_id == BIRTHDAY_JOURNEY)
            .group_by(Enrollment.member_id)
        ).all()
    )
    nps: dict[int, tuple[int | None, datetime | None]] = {}
    for member_id, score, answered_at in session.execute(
        select(Survey.member_id, Survey.score, Survey.answered_at)
        .where(_among(Survey.member_id, ids), Survey.kind == "nps", Survey.answered_at.is_not(None))
        .order_by(Survey.answered_at, Survey.id)
    ):
        nps[member_id] = (score, answered_at)
    lots = [expiring.get(i, (0, None)) for i in ids]
    years = [birthdays.get(i) for i in ids]
    answers = [nps.get(i, (None, None)) for i in ids]
    columns.update(
        points_expiring=[points for points, _ in lots],
        points_expiring_at=[at for _, at in lots],
        referral_link=[referral_link(public_base_url, code) for code in columns["referral_code"]],
        referrals_completed=[int(referrals.get(i, 0)) for i in ids],
        last_birthday_bonus_year=[int(y) if y and str(y).isdigit() else None for y in years],
        last_nps_score=[score for score, _ in answers],
        last_nps_at=[at for _, at in answers],
    )
    return columns


def _next_expiring(
    session: Session, zones: dict[int, str], now: datetime
) -> dict[int, tuple[int, datetime]]:
    """Per member: the points expiring on their next local expiry day (as `member_data`)."""
    lots: dict[int, list[tuple[datetime, int]]] = {}
    rows = session.execute(
        select(LedgerEntry.member_id, LedgerEntry.expires_at, LedgerEntry.remaining).where(
            _among(LedgerEntry.member_id, list(zones)),
            LedgerEntry.remaining > 0,
            LedgerEntry.expires_at > now,
        )
    )
    for member_id, expires_at, remaining in rows:
        if expires_at is not None and member_id in zones:
            lots.setdefault(member_id, []).append((expires_at, remaining))
    found: dict[int, tuple[int, datetime]] = {}
    for member_id, member_lots in lots.items():
        first = first_expiring_day(member_lots, zones[member_id])
        if first is not None:
            found[member_id] = first
    return found
