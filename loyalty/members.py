"""Reading members as plain data for the CLI, conditions, templates and the CRM."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from loyalty import ledger
from loyalty.errors import UnknownMemberError
from loyalty.models import Member, Referral
from loyalty.referrals import referral_link
from loyalty.settings import Settings
from loyalty.states import ReferralStatus

__all__ = ["get_member", "member_data", "member_view", "member_zone"]


def get_member(session: Session, external_id: str) -> Member:
    member = session.scalar(select(Member).where(Member.external_id == external_id))
    if member is None:
        raise UnknownMemberError(external_id)
    return member


def member_data(
    session: Session, member: Member, *, now: datetime, public_base_url: str
) -> dict[str, Any]:
    """The member with derived loyalty fields; datetimes aware UTC, money as Decimal."""
    expiring = ledger.next_expiring(session, member, now=now)
    referrals_completed = session.scalar(
        select(func.count(Referral.id)).where(
            Referral.referrer_id == member.id, Referral.status == ReferralStatus.COMPLETED
        )
    )
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
        "birthday": member.birthday,
        "tier": member.tier,
        "points_balance": member.points_balance,
        "lifetime_points": member.lifetime_points,
        "points_expiring": expiring[0] if expiring else 0,
        "points_expiring_at": expiring[1] if expiring else None,
        "referral_code": member.referral_code,
        "referral_link": referral_link(public_base_url, member.referral_code),
        "referrals_completed": int(referrals_completed or 0),
        "orders_count": member.orders_count,
        "total_spent": member.total_spent,
        "last_order_at": member.last_order_at,
        "email_consent": member.email_consent,
        "sms_consent": member.sms_consent,
        "attributes": dict(member.attributes),
        "enrolled_at": member.enrolled_at,
        "erased_at": member.erased_at,
    }


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def member_view(
    session: Session, member: Member, *, now: datetime, public_base_url: str
) -> dict[str, Any]:
    """`member_data` as JSON-ready values."""
    data = member_data(session, member, now=now, public_base_url=public_base_url)
    for key in ("birth_month", "birth_day", "birth_year"):
        data.pop(key)
    return {key: _plain(value) for key, value in data.items()}


def member_zone(member: Member, settings: Settings) -> str:
    """The member's IANA time zone, else the program's default."""
    return member.time_zone or settings.default_time_zone
