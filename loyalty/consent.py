"""The append-only consent log and the member's cached marketing consent."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy.orm import Session

from loyalty.models import Consent, Member

__all__ = ["Channel", "record_consent"]

Channel = Literal["email", "sms"]


def record_consent(
    session: Session,
    member: Member,
    channel: Channel,
    granted: bool,
    *,
    source: str,
    at: datetime,
    purpose: str = "marketing",
) -> bool:
    """Log a marketing consent change; returns False when nothing changed."""
    attribute = f"{channel}_consent"
    if purpose == "marketing" and getattr(member, attribute) is granted:
        return False
    session.add(
        Consent(
            member_id=member.id,
            channel=channel,
            purpose=purpose,
            granted=granted,
            source=source,
            at=at,
        )
    )
    if purpose == "marketing":
        setattr(member, attribute, granted)
        member.updated_at = at
    return True
