"""Referral codes and the referral lifecycle (pending → completed on the first order)."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from loyalty.models import Member, Referral
from loyalty.states import ReferralStatus

__all__ = ["complete_referral", "new_referral_code", "referral_link", "referral_verdict"]

# No 0/O, 1/I/L: codes are read aloud and typed from phones.
_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
#: Length of generated referral codes (31**10 ≈ 8e14 codes).
CODE_LENGTH = 10


def new_referral_code() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(CODE_LENGTH))


def referral_link(public_base_url: str, code: str) -> str:
    return f"{public_base_url.rstrip('/')}/r/{code}"


def referral_verdict(referee_email: str | None, referrer_email: str | None) -> str | None:
    """Why a referral looks fraudulent, or None when it does not."""
    if referee_email and referee_email == referrer_email:
        return "same_email"
    return None


def complete_referral(session: Session, referee: Member, *, at: datetime) -> Referral | None:
    """Mark the referee's pending referral completed; returns it, or None."""
    referral = session.scalar(
        select(Referral).where(
            Referral.referee_id == referee.id, Referral.status == ReferralStatus.PENDING
        )
    )
    if referral is None:
        return None
    referral.status = ReferralStatus.COMPLETED
    referral.completed_at = at
    return referral
