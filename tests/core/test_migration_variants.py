"""Migration 0012 fills in what earlier releases kept elsewhere: each enrollment's split
variant (from its step notes) and each email's latest open and click (from SendGrid's
stored events)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import inspect, select

from loyalty.app import App
from loyalty.db import downgrade, upgrade
from loyalty.models import Enrollment, Message, ProviderEvent
from tests.core.test_states import enrollment_row, journey_version, message_row
from tests.factories import make_member


def test_split_variants_and_engagement_are_filled_in_from_what_was_kept(app: App) -> None:
    member = make_member(app)
    version_id = journey_version(app)
    now = app.clock.now()
    notes = {"notes": {"wait": {"resume": "pick"}, "pick": {"variant": "short"}}}
    with app.database.transaction() as session:
        split = Enrollment(**enrollment_row(app, member.id, version_id, context=notes))
        plain = Enrollment(**enrollment_row(app, member.id, version_id, occurrence="2"))
        session.add_all([split, plain])
        session.flush()
        opened = Message(**message_row(app, member.id, enrollment_id=split.id))
        clicked = Message(**message_row(app, member.id, idempotency_key="k-2"))
        untouched = Message(**message_row(app, member.id, idempotency_key="k-3"))
        session.add_all([opened, clicked, untouched])
        session.flush()
        ids = (split.id, plain.id, opened.id, clicked.id, untouched.id)
        stamps = [
            ("open", opened.id, now - timedelta(days=2)),
            ("open", opened.id, now - timedelta(days=1)),
            ("open", clicked.id, now - timedelta(days=3)),
            ("click", clicked.id, now - timedelta(days=2)),
            ("delivered", untouched.id, now),
        ]
        for n, (kind, message_id, at) in enumerate(stamps):
            payload = {"event": kind, "message_id": str(message_id), "timestamp": at.timestamp()}
            session.add(
                ProviderEvent(
                    provider="sendgrid",
                    provider_event_id=f"sg-{n}",
                    kind=kind,
                    payload=payload,
                    received_at=now,
                )
            )

    downgrade(app.database, "0011")
    assert "variant" not in {
        c["name"] for c in inspect(app.database.engine).get_columns("enrollments")
    }
    upgrade(app.database)

    with app.database.sessions() as session:
        variants = dict(session.execute(select(Enrollment.id, Enrollment.variant)).all())
        engagement = {
            m.id: (m.last_opened_at, m.last_clicked_at) for m in session.scalars(select(Message))
        }
    assert variants == {ids[0]: "short", ids[1]: None}
    assert engagement == {
        ids[2]: (now - timedelta(days=1), None),
        ids[3]: (now - timedelta(days=2), now - timedelta(days=2)),
        ids[4]: (None, None),
    }
