"""Erasing a member: personal data gone, queued messages cancelled, journeys ended."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from cli import main
from loyalty.app import App
from loyalty.event_types import EventInput
from loyalty.models import Member, Survey
from tests.engine.helpers import enrollments, journey_folder, messages, published, send_event
from tests.factories import make_member

JOURNEY = """
id: later
name: Later
status: active
trigger: {type: event, event: member.enrolled}
entry: {once: true}
steps:
  - {id: pause, type: wait, duration: 2d}
  - {id: mail, type: send_email, template: hello}
"""


def test_erase_blanks_the_member_and_stops_everything_queued(app: App, tmp_path: Path) -> None:
    published(
        app,
        journey_folder(
            tmp_path, {"later": JOURNEY}, {"en/hello.email": "---\nsubject: Hi\n---\n<p>Hi</p>\n"}
        ),
    )
    make_member(
        app,
        external_id="m-1",
        email="ann@example.com",
        phone="+14155550100",
        first_name="Ann",
        email_consent=True,
        attributes={"vip": True},
    )
    send_event(app, EventInput("member.enrolled", "m-1", id="e-1"))
    assert enrollments(app)[0].state == "waiting"
    with app.database.transaction() as session:
        member_id = session.scalar(select(Member.id))
        session.add(
            Survey(
                member_id=member_id,
                kind="nps",
                channel="email",
                token="t-1",
                score=9,
                comment="Ask for Ann at the Kraków store",
                sent_at=app.clock.now(),
            )
        )

    result = CliRunner().invoke(
        main, ["members", "erase", "m-1", "--yes"], env={"DATABASE_URL": app.database.url}
    )
    assert result.exit_code == 0, result.output
    assert "1 journey(s) ended; CRMs: none configured" in result.output
    shown = CliRunner().invoke(
        main, ["members", "show", "m-1", "--json"], env={"DATABASE_URL": app.database.url}
    )
    assert '"email": null' in shown.output and '"first_name": null' in shown.output
    assert '"attributes": {}' in shown.output and '"erased_at": "2026-' in shown.output
    [enrollment] = enrollments(app)
    assert (enrollment.state, enrollment.exit_reason) == ("exited", "erased")
    assert messages(app) == []
    with app.database.sessions() as session:
        survey = session.scalar(select(Survey))
        assert survey is not None and (survey.score, survey.comment) == (9, None)
