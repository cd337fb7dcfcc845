"""GDPR erasure: the member's personal data goes; what the law lets us keep stays.

Kept: the ledger (amounts, no personal data), the consent log and the
suppression list (proof of consent and the duty not to contact). Queued
messages are cancelled and running journeys end.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from loyalty.models import Enrollment, Member, Message, Survey
from loyalty.states import IN_FLIGHT, EnrollmentState, MessageState

__all__ = ["erase_member"]


def erase_member(session: Session, member: Member, *, now: datetime) -> dict[str, int]:
    """Blank the member's personal fields; returns how many messages and enrollments stopped."""
    for field in (
        "email",
        "phone",
        "first_name",
        "last_name",
        "birth_year",
        "birth_month",
        "birth_day",
        "time_zone",
        "locale",
    ):
        setattr(member, field, None)
    member.attributes = {}
    member.email_consent = member.sms_consent = False
    member.erased_at = member.updated_at = now
    messages = session.execute(
        update(Message)
        .where(
            Message.member_id == member.id,
            Message.state.in_((MessageState.PENDING, MessageState.DEFERRED, MessageState.CLAIMED)),
        )
        .values(state=MessageState.SUPPRESSED, error="erased", updated_at=now)
    )
    # Survey comments are free text and may name the member; the scores stay.
    session.execute(update(Survey).where(Survey.member_id == member.id).values(comment=None))
    enrollments = session.execute(
        update(Enrollment)
        .where(Enrollment.member_id == member.id, Enrollment.state.in_(IN_FLIGHT))
        .values(state=EnrollmentState.EXITED, exit_reason="erased", exited_at=now, next_run_at=None)
    )
    return {
        "messages_cancelled": int(messages.rowcount or 0),  # type: ignore[attr-defined]
        "enrollments_ended": int(enrollments.rowcount or 0),  # type: ignore[attr-defined]
    }
