"""The contact policy, checked when a message is claimed for sending (DESIGN §9).

Order: erased → consent for the channel and purpose → suppression → send.
Quiet hours and frequency caps come with the provider channels.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from loyalty.models import Member, Suppression

__all__ = ["Decision", "check"]


@dataclass(frozen=True)
class Decision:
    verdict: str  # send | suppressed | failed
    reason: str | None = None

    @property
    def allowed(self) -> bool:
        return self.verdict == "send"


def address_of(member: Member, channel: str) -> str | None:
    return member.email if channel == "email" else member.phone


def check(session: Session, member: Member, channel: str, *, transactional: bool) -> Decision:
    """Whether the member may get a message on `channel` now, and why not."""
    if member.erased_at is not None:
        return Decision("suppressed", "erased")
    address = address_of(member, channel)
    if not address:
        return Decision("failed", f"no_{'email' if channel == 'email' else 'phone'}")
    if not transactional and getattr(member, f"{channel}_consent") is not True:
        return Decision("suppressed", "no_consent")
    suppressed = session.scalar(
        select(Suppression.reason).where(
            Suppression.channel == channel, Suppression.address == address.lower()
        )
    )
    if suppressed is not None:
        return Decision("suppressed", suppressed)
    return Decision("send")
