"""How a member engaged with their email: messages opened or clicked since a moment.

The SendGrid Event Webhook keeps each message's latest open and click
(`channels.webhooks`); journeys ask about them through one indexed query per
question (messages by member).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from loyalty.models import Message

__all__ = ["Engagement", "EngagementCounter", "count_engagements", "engagement_counter"]

Engagement = Literal["opened", "clicked"]

#: (opened or clicked, journey id or None, step id or None, since) → messages.
EngagementCounter = Callable[[str, str | None, str | None, datetime], int]


def count_engagements(
    session: Session,
    member_id: int,
    engagement: str,
    *,
    journey_id: str | None,
    step_id: str | None,
    since: datetime,
) -> int:
    """The member's emails (of a journey, of one of its steps, or any) opened or clicked since."""
    column = Message.last_clicked_at if engagement == "clicked" else Message.last_opened_at
    query = select(func.count(Message.id)).where(
        Message.member_id == member_id, Message.channel == "email", column >= since
    )
    if journey_id is not None:
        query = query.where(Message.journey_id == journey_id)
    if step_id is not None:
        query = query.where(Message.step_id == step_id)
    return int(session.scalar(query) or 0)


def engagement_counter(session: Session, member_id: int) -> EngagementCounter:
    """`count_engagements` for one member, as conditions call it."""

    def count(engagement: str, journey_id: str | None, step_id: str | None, since: datetime) -> int:
        return count_engagements(
            session, member_id, engagement, journey_id=journey_id, step_id=step_id, since=since
        )

    return count
