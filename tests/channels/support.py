"""Due outbox rows, built the way the engine builds them, for the channel tests."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from automations.versions import publish
from loyalty.app import App
from loyalty.models import Enrollment, JourneyVersion, Member, Message
from loyalty.referrals import new_referral_code
from tests.engine.helpers import journey_folder

JOURNEY = """
id: promo
name: Promo
status: active
locales: [en]
trigger: {type: event, event: member.enrolled}
entry: {every_time: true}
steps:
  - {id: mail, type: send_email, template: promo}
  - {id: text, type: send_sms, template: promo}
"""
TEMPLATES = {
    "en/promo.email": "---\nsubject: Hello {{ member.first_name }}\n---\n"
    "<p>Your balance: {{ member.points_balance }}</p>\n",
    "en/promo.sms": "Hi {{ member.first_name }}, {{ member.points_balance }} pts. STOP to end",
}


def promo_version(app: App, tmp_path: Path) -> int:
    publish(app, journey_folder(tmp_path, {"promo": JOURNEY}, TEMPLATES))
    with app.database.sessions() as session:
        version_id = session.scalar(select(JourneyVersion.id))
    assert version_id is not None
    return version_id


def due_messages(
    app: App, version_id: int, count: int, channel: str, *, start: int = 0, **member: Any
) -> list[int]:
    """`count` members, each with one pending message on `channel` (step mail or text)."""
    now = app.clock.now()
    step = "mail" if channel == "email" else "text"
    with app.database.transaction() as session:
        session.execute(
            insert(Member),
            [
                {
                    "external_id": f"bulk-{start + n}",
                    "email": f"member{start + n}@example.com",
                    "phone": f"+1415555{start + n:04d}",
                    "first_name": "Ann",
                    "tier": "bronze",
                    "referral_code": new_referral_code(),
                    "email_consent": True,
                    "sms_consent": True,
                    "time_zone": "UTC",
                    "enrolled_at": now,
                    "created_at": now,
                    "updated_at": now,
                    **member,
                }
                for n in range(count)
            ],
        )
        members = session.scalars(
            select(Member.id)
            .where(Member.external_id.like("bulk-%"))
            .order_by(Member.id)
            .offset(start)
        ).all()
        session.execute(
            insert(Enrollment),
            [
                {
                    "journey_id": "promo",
                    "member_id": m,
                    "occurrence": f"{channel}:{m}",
                    "journey_version_id": version_id,
                    "state": "completed",
                    "current_step": step,
                    "context": {},
                    "entered_at": now,
                }
                for m in members
            ],
        )
        enrollments = session.execute(
            select(Enrollment.id, Enrollment.member_id).where(
                Enrollment.occurrence.like(f"{channel}:%"), Enrollment.member_id.in_(members)
            )
        ).all()
        session.execute(
            insert(Message),
            [
                {
                    "idempotency_key": f"enrollment:{e}:{step}",
                    "enrollment_id": e,
                    "member_id": m,
                    "journey_id": "promo",
                    "step_id": step,
                    "channel": channel,
                    "purpose": "marketing",
                    "template": "promo",
                    "state": "pending",
                    "attempts": 0,
                    "decisions": {},
                    "unsubscribe_token": secrets.token_urlsafe(24),
                    "created_at": now,
                    "updated_at": now,
                }
                for e, m in enrollments
            ],
        )
        return list(
            session.scalars(
                select(Message.id).where(Message.channel == channel).order_by(Message.id)
            )
        )


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
