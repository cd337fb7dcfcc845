"""Due outbox rows, built the way the engine builds them, for benchmarks and channel tests."""

from __future__ import annotations

import secrets
import textwrap
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from automations.versions import publish
from loyalty.app import App
from loyalty.models import Enrollment, JourneyVersion, Member, Message
from loyalty.referrals import new_referral_code

__all__ = ["JOURNEY", "TEMPLATES", "due_messages", "promo_version"]

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
    """Publish the promo journey (one email step, one SMS step); its version id."""
    folder = tmp_path / "journeys"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "promo.yaml").write_text(textwrap.dedent(JOURNEY).lstrip(), encoding="utf-8")
    for key, text in TEMPLATES.items():
        path = folder / "templates" / f"{key}.liquid"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    publish(app, folder)
    with app.database.sessions() as session:
        version_id: int | None = session.scalar(select(JourneyVersion.id))
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
