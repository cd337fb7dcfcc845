"""Reading members as plain data for the CLI, conditions, templates and the CRM."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Row, bindparam, func, select
from sqlalchemy.orm import Session

from loyalty.clock import ensure_utc
from loyalty.db import among
from loyalty.errors import UnknownMemberError
from loyalty.models import LedgerEntry, Member, Referral, birthday_text
from loyalty.referrals import referral_link
from loyalty.settings import Settings
from loyalty.states import ReferralStatus

__all__ = [
    "LazyMemberData",
    "MemberRow",
    "first_expiring_day",
    "get_member",
    "lazy_members_data",
    "member_data",
    "member_view",
    "member_zone",
    "members_data",
    "next_expiring_on_local_day",
]

#: A member as sending reads it: the ORM object, or a Core row of the `members` columns
#: (a batch of emails reads its members' columns without building objects).
MemberRow = Member | Row[*tuple[Any, ...]]

#: A local day lasts at most this long (a DST change adds an hour), so every lot of the
#: first expiring day expires within this much of the first one.
_LONGEST_DAY = timedelta(hours=26)


def get_member(session: Session, external_id: str) -> Member:
    member = session.scalar(select(Member).where(Member.external_id == external_id))
    if member is None:
        raise UnknownMemberError(external_id)
    return member


def first_expiring_day(
    lots: Iterable[tuple[datetime, int]], zone: str
) -> tuple[int, datetime] | None:
    """The points of the lots that expire on the first local day any expire, and its first instant.

    Two orders on one day in the member's zone expire together in the member's eyes, even
    if their lots expire hours apart: a reminder says their sum.
    """
    tz = ZoneInfo(zone)
    ordered = sorted((ensure_utc(at), points) for at, points in lots if points > 0)
    if not ordered:
        return None
    first = ordered[0][0]
    day = first.astimezone(tz).date()
    total = sum(points for at, points in ordered if at.astimezone(tz).date() == day)
    return total, first


def next_expiring_on_local_day(
    session: Session, member: Member, *, now: datetime, default_zone: str
) -> tuple[int, datetime] | None:
    """The points expiring on the member's next local expiry day, and when the first go."""
    return _expiring_by_member(session, [member], now=now, default_zone=default_zone).get(member.id)


# The two reads of `members_data`, built once (a template or condition reads them per member).
#: The lots of some members still to expire after `now`, by member and expiry.
_EXPIRING = (
    select(LedgerEntry.member_id, LedgerEntry.expires_at, LedgerEntry.remaining)
    .where(
        among(LedgerEntry.member_id, "member_ids"),
        LedgerEntry.remaining > 0,
        LedgerEntry.expires_at > bindparam("now"),
    )
    .order_by(LedgerEntry.member_id, LedgerEntry.expires_at)
)
#: The completed referrals of some members, by referrer.
_COMPLETED = (
    select(Referral.referrer_id, func.count(Referral.id))
    .where(
        among(Referral.referrer_id, "member_ids"),
        Referral.status == ReferralStatus.COMPLETED,
    )
    .group_by(Referral.referrer_id)
)


def _expiring_by_member(
    session: Session, members: Sequence[MemberRow], *, now: datetime, default_zone: str
) -> dict[int, tuple[int, datetime]]:
    """`next_expiring_on_local_day` of each member holding points still to expire."""
    # One read of the lots still to expire (a member holds a few): the first day's are kept.
    rows = session.execute(_EXPIRING, {"member_ids": [m.id for m in members], "now": now}).all()
    lots: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
    for member_id, at, remaining in rows:
        if at is not None:
            lots[member_id].append((at, remaining))
    expiring: dict[int, tuple[int, datetime]] = {}
    for member in members:
        held = lots.get(member.id)
        if not held:
            continue
        first = held[0][0]
        day = first_expiring_day(
            [(at, remaining) for at, remaining in held if at < first + _LONGEST_DAY],
            member.time_zone or default_zone,
        )
        if day is not None:
            expiring[member.id] = day
    return expiring


def member_data(
    session: Session,
    member: MemberRow,
    *,
    now: datetime,
    public_base_url: str,
    default_zone: str,
) -> dict[str, Any]:
    """The member with derived loyalty fields; datetimes aware UTC, money as Decimal.

    `default_zone` is the program's zone, for members without one of their own.
    """
    return members_data(
        session, [member], now=now, public_base_url=public_base_url, default_zone=default_zone
    )[member.id]


def members_data(
    session: Session,
    members: Sequence[MemberRow],
    *,
    now: datetime,
    public_base_url: str,
    default_zone: str,
) -> dict[int, dict[str, Any]]:
    """`member_data` of many members by id, in two queries whatever their number."""
    if not members:
        return {}
    expiring = _expiring_by_member(session, members, now=now, default_zone=default_zone)
    completed = dict(session.execute(_COMPLETED, {"member_ids": [m.id for m in members]}).all())
    return {
        m.id: _data(m, expiring.get(m.id), int(completed.get(m.id) or 0), public_base_url)
        for m in members
    }


def _data(
    member: MemberRow,
    expiring: tuple[int, datetime] | None,
    referrals_completed: int,
    public_base_url: str,
) -> dict[str, Any]:
    return {
        "external_id": member.external_id,
        "email": member.email,
        "phone": member.phone,
        "first_name": member.first_name,
        "last_name": member.last_name,
        "locale": member.locale,
        "time_zone": member.time_zone,
        "birth_month": member.birth_month,
        "birth_day": member.birth_day,
        "birth_year": member.birth_year,
        "birthday": birthday_text(member.birth_month, member.birth_day, member.birth_year),
        "tier": member.tier,
        "points_balance": member.points_balance,
        "lifetime_points": member.lifetime_points,
        "points_expiring": expiring[0] if expiring else 0,
        "points_expiring_at": expiring[1] if expiring else None,
        "referral_code": member.referral_code,
        "referral_link": referral_link(public_base_url, member.referral_code),
        "referrals_completed": referrals_completed,
        "orders_count": member.orders_count,
        "total_spent": member.total_spent,
        "last_order_at": member.last_order_at,
        "email_consent": member.email_consent,
        "sms_consent": member.sms_consent,
        "attributes": dict(member.attributes),
        "enrolled_at": member.enrolled_at,
        "erased_at": member.erased_at,
    }


#: The fields of `member_data` that are read beyond the member's row.
_DERIVED = ("points_expiring", "points_expiring_at", "referrals_completed")


class LazyMemberData(Mapping[str, Any]):
    """`member_data` whose fields beyond the member's row are read when first asked for.

    A journey step that only queues a message (most do) reads none of them; one whose
    condition or text asks reads them once. Use it inside the session it was made with.
    """

    def __init__(
        self,
        session: Session,
        member: Member,
        *,
        now: datetime,
        public_base_url: str,
        default_zone: str,
    ) -> None:
        self._fields = _data(member, None, 0, public_base_url)
        self._read = functools.partial(
            member_data,
            session,
            member,
            now=now,
            public_base_url=public_base_url,
            default_zone=default_zone,
        )
        self._complete = False

    def _completed(self) -> dict[str, Any]:
        if not self._complete:
            self._fields = self._read()
            self._complete = True
        return self._fields

    def __getitem__(self, key: str) -> Any:
        return (self._completed() if key in _DERIVED else self._fields)[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._completed())

    def __len__(self) -> int:
        return len(self._fields)


def lazy_members_data(
    session: Session,
    members: Sequence[Member],
    *,
    now: datetime,
    public_base_url: str,
    default_zone: str,
) -> dict[int, Mapping[str, Any]]:
    """`members_data` of many members by id, whose fields beyond the members' rows are read
    for all of them at once (`members_data`'s two queries) when first asked for, if ever:
    an audience on the members' own fields (consent, tier) reads none. Use it inside the
    session it was made with, before that session changes the members' ledger or referrals."""
    bulk: dict[int, dict[str, Any]] = {}

    def complete() -> dict[int, dict[str, Any]]:
        if not bulk:
            bulk.update(
                members_data(
                    session,
                    members,
                    now=now,
                    public_base_url=public_base_url,
                    default_zone=default_zone,
                )
            )
        return bulk

    return {m.id: _LazyInBulk(m, complete, public_base_url) for m in members}


class _LazyInBulk(Mapping[str, Any]):
    """One member's part of `lazy_members_data`."""

    def __init__(
        self,
        member: Member,
        complete: Callable[[], dict[int, dict[str, Any]]],
        public_base_url: str,
    ) -> None:
        self._id = member.id
        self._fields = _data(member, None, 0, public_base_url)
        self._complete = complete

    def __getitem__(self, key: str) -> Any:
        return (self._complete()[self._id] if key in _DERIVED else self._fields)[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._complete()[self._id])

    def __len__(self) -> int:
        return len(self._fields)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def member_view(
    session: Session,
    member: Member,
    *,
    now: datetime,
    public_base_url: str,
    default_zone: str,
) -> dict[str, Any]:
    """`member_data` as JSON-ready values."""
    data = member_data(
        session, member, now=now, public_base_url=public_base_url, default_zone=default_zone
    )
    for key in ("birth_month", "birth_day", "birth_year"):
        data.pop(key)
    return {key: _plain(value) for key, value in data.items()}


def member_zone(member: MemberRow, settings: Settings) -> str:
    """The member's IANA time zone, else the program's default."""
    return member.time_zone or settings.default_time_zone
