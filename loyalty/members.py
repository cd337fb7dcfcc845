"""Reading members as plain data for the CLI, templates and the CRM."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from loyalty import ledger
from loyalty.errors import UnknownMemberError
from loyalty.models import Member, Referral
from loyalty.referrals import referral_link

__all__ = ["get_member", "member_view"]


def get_member(session: Session, external_id: str) -> Member:
    member = session.scalar(select(Member).where(Member.external_id == external_id))
    if member is None:
        raise UnknownMemberError(external_id)
    return member


def member_view(
    session: Session, member: Member, *, now: datetime, public_base_url: str
) -> dict[str, Any]:
    """The member as plain JSON-ready data, with derived loyalty fields."""
    expiring = ledger.next_expiring(session, member, now=now)
    referrals_completed = session.scalar(
        select(func.count(Referral.id)).where(
            Referral.referrer_id == member.id, Referral.status == "completed"
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
        "birthday": member.birthday,
        "tier": member.tier,
        "points_balance": member.points_balance,
        "lifetime_points": member.lifetime_points,
        "points_expiring": expiring[0] if expiring else 0,
        "points_expiring_at": expiring[1].isoformat() if expiring else None,
        "referral_code": member.referral_code,
        "referral_link": referral_link(public_base_url, member.referral_code),
        "referrals_completed": referrals_completed,
        "orders_count": member.orders_count,
        "total_spent": str(member.total_spent),
        "last_order_at": member.last_order_at.isoformat() if member.last_order_at else None,
        "email_consent": member.email_consent,
        "sms_consent": member.sms_consent,
        "attributes": member.attributes,
        "enrolled_at": member.enrolled_at.isoformat(),
        "erased_at": member.erased_at.isoformat() if member.erased_at else None,
    }
