"""Due outbox rows for the channel tests (the rows themselves come from bench.outbox_rows)."""

from __future__ import annotations

import secrets

from sqlalchemy import select

from bench.outbox_rows import JOURNEY, TEMPLATES, due_messages, promo_version
from loyalty.app import App
from loyalty.models import Enrollment, Message

__all__ = [
    "JOURNEY",
    "TEMPLATES",
    "another_message",
    "due_messages",
    "promo_version",
    "states",
]


def states(app: App) -> dict[str, int]:
    with app.database.sessions() as session:
        rows = session.scalars(select(Message.state)).all()
    out: dict[str, int] = {}
    for state in rows:
        out[state] = out.get(state, 0) + 1
    return out


def another_message(app: App, version_id: int, member_id: int, channel: str, key: str) -> int:
    """One more pending message for an existing member (a later journey step, say)."""
    now = app.clock.now()
    with app.database.transaction() as session:
        enrollment = Enrollment(
            journey_id="promo",
            member_id=member_id,
            occurrence=key,
            journey_version_id=version_id,
            state="completed",
            current_step="text",
            context={},
            entered_at=now,
        )
        session.add(enrollment)
        session.flush()
        message = Message(
            idempotency_key=f"enrollment:{enrollment.id}:text",
            enrollment_id=enrollment.id,
            member_id=member_id,
            journey_id="promo",
            step_id="text",
            channel=channel,
            purpose="marketing",
            template="promo",
            state="pending",
            attempts=0,
            decisions={},
            unsubscribe_token=secrets.token_urlsafe(24),
            created_at=now,
            updated_at=now,
        )
        session.add(message)
        session.flush()
        return message.id
