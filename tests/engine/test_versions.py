"""Publishing: a changed file is a new version; in-flight members finish on theirs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner

from automations.versions import latest_published, publish, versions_frozen
from bench.pipeline_journey import counting
from cli import main
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.event_types import EventInput
from tests.engine.helpers import enrollments, journey_folder, messages, send_event, tick
from tests.factories import make_member

JOURNEY = """
id: hello
name: Hello
status: active
trigger: {type: event, event: member.enrolled}
entry: {once: true}
steps:
  - {id: first, type: send_email, template: first}
  - {id: pause, type: wait, duration: 1d}
  - {id: second, type: send_email, template: second}
"""


def mail(subject: str) -> str:
    return f"---\nsubject: {subject}\n---\n<p>{subject}</p>\n"


def test_in_flight_enrollments_finish_on_their_version(
    app: App, tmp_path: Path, clock: FrozenClock
) -> None:
    folder = journey_folder(
        tmp_path,
        {"hello": JOURNEY},
        {"en/first.email": mail("one"), "en/second.email": mail("two")},
    )
    assert publish(app, folder).published == [("hello", 1)]
    assert publish(app, folder).unchanged == [("hello", 1)]  # nothing changed, nothing stored
    make_member(app, external_id="early", email="e@example.com", email_consent=True)
    send_event(app, EventInput("member.enrolled", "early", id="1"))

    # A marketer edits a template; the next publish stores version 2.
    (folder / "templates" / "en" / "second.email.liquid").write_text(mail("two, edited"))
    assert publish(app, folder).published == [("hello", 2)]
    make_member(app, external_id="late", email="l@example.com", email_consent=True)
    send_event(app, EventInput("member.enrolled", "late", id="2"))

    clock.advance(timedelta(days=1))
    tick(app)
    seconds = {m.member_id: m for m in messages(app) if m.step_id == "second"}
    early, late = enrollments(app)
    assert seconds[early.member_id].state == seconds[late.member_id].state == "sent"
    bodies = sorted(p.read_text() for p in app.settings.outbox_dir.rglob("*.eml"))
    assert sum("Subject: two, edited" in b for b in bodies) == 1
    assert sum("Subject: two\n" in b for b in bodies) == 1


def test_a_broken_file_keeps_its_last_version_and_spares_the_others(
    app: App, tmp_path: Path
) -> None:
    other = JOURNEY.replace("id: hello", "id: other")
    folder = journey_folder(
        tmp_path,
        {"hello": JOURNEY, "other": other},
        {"en/first.email": mail("one"), "en/second.email": mail("two")},
    )
    publish(app, folder)
    (folder / "hello.yaml").write_text(JOURNEY.replace("type: wait", "type: snooze"))
    (folder / "other.yaml").write_text(other.replace("name: Hello", "name: Other"))
    report = publish(app, folder)
    assert report.published == [("other", 2)]
    assert len(report.problems) == 1 and "snooze" in str(report.problems[0])

    result = CliRunner().invoke(
        main, ["journeys", "list", "--json"], env={"DATABASE_URL": app.database.url}
    )
    assert result.exit_code == 0, result.output
    assert '"version": 1' in result.output and '"version": 2' in result.output


def test_while_versions_are_frozen_they_are_read_once_and_a_publish_goes_unseen(
    app: App, tmp_path: Path
) -> None:
    # Given a published journey, and the versions frozen (as a simulation does)
    templates = {"en/first.email": mail("one"), "en/second.email": mail("two")}
    folder = journey_folder(tmp_path, {"hello": JOURNEY}, templates)
    publish(app, folder)
    with versions_frozen():
        with counting(app.database.engine) as first, app.database.sessions() as session:
            [before] = latest_published(session)
        with counting(app.database.engine) as again, app.database.sessions() as session:
            assert latest_published(session) == [before]
        # When a new version is published meanwhile, the frozen reading stays
        (folder / "templates" / "en" / "second.email.liquid").write_text(mail("two, edited"))
        assert publish(app, folder).published == [("hello", 2)]
        assert versions_read(app) == [1]
    # Then the first reading asked the database and the later ones did not
    assert first.statements > 0 and again.statements == 0
    # And once thawed, the new version is read
    assert versions_read(app) == [2]


def versions_read(app: App) -> list[int]:
    with app.database.sessions() as session:
        return [published.version for published in latest_published(session)]
