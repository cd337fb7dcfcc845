"""Paying held referrals once their hold is over, and the review of flagged ones.

`pay_due` is what the scheduler's `referral_payouts` tick runs: each held referral
whose hold is over moves to completed and records `referral.completed` in one
transaction (compare-and-set on the status, event id `referral:{id}`), so two
schedulers or a retry pay it once. Reviewers list, approve or reject with
`loyalty referrals review|approve|reject`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session, aliased

from loyalty.db import Database
from loyalty.errors import SkippableError
from loyalty.events import record_event
from loyalty.models import Member, Referral
from loyalty.referrals import payout_event
from loyalty.settings import Settings
from loyalty.states import ReferralStatus

__all__ = ["ReviewError", "ReviewItem", "approve", "pay_due", "reject", "review_list"]

#: Referrals paid per run at most; the next run takes the rest.
PAY_BATCH = 1000


class ReviewError(SkippableError):
    """This referral cannot be approved or rejected as asked."""


@dataclass(frozen=True)
class ReviewItem:
    id: int
    status: str
    referrer: str
    referee: str
    order_id: str | None
    ordered_at: datetime | None
    hold_until: datetime | None
    reasons: list[str]
    review_note: str | None


def pay_due(database: Database, settings: Settings, now: datetime) -> list[int]:
    """Pay every held referral whose hold is over; the ids of the events recorded."""
    with database.sessions() as session:
        ids = session.scalars(
            select(Referral.id)
            .where(Referral.status == ReferralStatus.HELD, Referral.hold_until <= now)
            .order_by(Referral.hold_until, Referral.id)
            .limit(PAY_BATCH)
        ).all()
    paid: list[int] = []
    for referral_id in ids:
        with database.transaction() as session:
            event_id = _pay(session, referral_id, settings, now)
        if event_id is not None:
            paid.append(event_id)
    return paid


def _pay(session: Session, referral_id: int, settings: Settings, now: datetime) -> int | None:
    changed = session.execute(
        update(Referral)
        .where(
            Referral.id == referral_id,
            Referral.status == ReferralStatus.HELD,
            Referral.hold_until <= now,
        )
        .values(status=ReferralStatus.COMPLETED, completed_at=now)
    )
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        return None  # paid by another run meanwhile
    referral = session.get_one(Referral, referral_id, populate_existing=True)
    referrer = session.get_one(Member, referral.referrer_id)
    if referrer.erased_at is not None:
        referral.status = ReferralStatus.REJECTED
        referral.review_note = "the referrer was erased: nothing paid"
        return None
    event, _ = record_event(session, payout_event(session, referral), settings=settings, now=now)
    return event.id


def review_list(session: Session, *, limit: int = 200) -> list[ReviewItem]:
    """Referrals waiting: flagged ones (review) first, then held ones, oldest first."""
    referrer, referee = aliased(Member), aliased(Member)
    rows = session.execute(
        select(Referral, referrer.external_id, referee.external_id)
        .join(referrer, referrer.id == Referral.referrer_id)
        .join(referee, referee.id == Referral.referee_id)
        .where(Referral.status.in_((ReferralStatus.REVIEW, ReferralStatus.HELD)))
        .order_by(Referral.status.desc(), Referral.ordered_at, Referral.id)
        .limit(limit)
    ).all()
    return [
        ReviewItem(
            id=referral.id,
            status=referral.status,
            referrer=referrer_id,
            referee=referee_id,
            order_id=referral.order_id,
            ordered_at=referral.ordered_at,
            hold_until=referral.hold_until,
            reasons=referral.reasons.split(",") if referral.reasons else [],
            review_note=referral.review_note,
        )
        for referral, referrer_id, referee_id in rows
    ]


def approve(database: Database, referral_id: int, *, now: datetime) -> Referral:
    """A flagged referral is fine: it is held as a clean one, paid once its hold is over."""
    with database.transaction() as session:
        referral = _waiting(session, referral_id, (ReferralStatus.REVIEW,))
        referral.status = ReferralStatus.HELD
        referral.reviewed_at = now
        referral.review_note = "approved"
        session.flush()
        session.expunge(referral)
        return referral


def reject(
    database: Database, referral_id: int, *, now: datetime, reason: str | None = None
) -> Referral:
    """Nothing will be paid for this referral."""
    with database.transaction() as session:
        referral = _waiting(session, referral_id, (ReferralStatus.REVIEW, ReferralStatus.HELD))
        referral.status = ReferralStatus.REJECTED
        referral.reviewed_at = now
        referral.review_note = f"rejected: {reason}" if reason else "rejected"
        session.flush()
        session.expunge(referral)
        return referral


def _waiting(session: Session, referral_id: int, statuses: tuple[ReferralStatus, ...]) -> Referral:
    referral = session.get(Referral, referral_id, with_for_update=True)
    if referral is None:
        raise ReviewError(f"no referral {referral_id}")
    if referral.status not in statuses:
        wanted = " or ".join(statuses)
        raise ReviewError(f"referral {referral_id} is {referral.status}, not {wanted}")
    return referral
