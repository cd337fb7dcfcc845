"""Surveys for the survey tests: a member who can answer one, surveys sent to them, and what
their answers left behind (the surveys' rows, `survey.answered` events)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from loyalty.app import App
from loyalty.models import Event, Member, Survey
from tests.factories import make_member

PHONE = "+48600100200"
TOKEN = "srv_7c2d9e4b1a6f3e8d5c0b"


def survey_member(app: App) -> Member:
    """Ada, with an email address and this phone number."""
    return make_member(app, email="ada@example.com", phone=PHONE, first_name="Ada")


def make_survey(
    app: App,
    member: Member,
    *,
    kind: str = "nps",
    channel: str = "email",
    token: str = TOKEN,
    sent_at: datetime | None = None,
    **fields: Any,
) -> Survey:
    with app.database.transaction() as session:
        survey = Survey(
            member_id=member.id,
            kind=kind,
            channel=channel,
            token=token,
            sent_at=sent_at or app.clock.now(),
            **fields,
        )
        session.add(survey)
    return survey


def answered_events(app: App) -> list[Event]:
    with app.database.sessions() as session:
        query = select(Event).where(Event.type == "survey.answered").order_by(Event.id)
        return list(session.scalars(query))


def survey_state(app: App) -> list[tuple[Any, ...]]:
    with app.database.sessions() as session:
        rows = session.scalars(select(Survey).order_by(Survey.id))
        return [(s.id, s.score, s.comment, s.answered_at) for s in rows]
