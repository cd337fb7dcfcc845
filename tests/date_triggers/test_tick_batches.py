"""Date and cron ticks enter many members at once: each once, refusals kept, first steps run.

The ticks enter members a batch per insert and queue their first steps a batch per
message; the batch sizes are shrunk here so that a few dozen members span many batches.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select

from automations.runtime.ticks import enter_date_journeys, fire_schedules
from automations.triggers import entry_batches
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.journey_pauses import pause
from loyalty.models import Enrollment, EntryRefusal, Member
from tests.engine.helpers import enrollments, journey_folder, messages, published, workers
from tests.factories import make_member

BIRTHDAY = """
id: birthday
name: Birthday
status: active
trigger: {type: date, field: birthday, at: "09:00"}
entry: {once_per: year}
steps:
  - {id: greeting, type: send_email, template: greeting}
"""
PICKY_BIRTHDAY = """
id: birthday
name: Birthday
status: active
trigger: {type: date, field: birthday, at: "09:00"}
entry: {once_per: year, cooldown: 30d}
audience: {field: email_consent, eq: true}
steps:
  - {id: greeting, type: send_email, template: greeting}
"""
WEEKLY = """
id: weekly
name: Weekly news
status: active
trigger: {type: schedule, cron: "0 9 * * *", zone: UTC}
entry: {every_time: true}
steps:
  - {id: news, type: send_email, template: greeting}
"""
TEMPLATES = {"en/greeting.email": "---\nsubject: Hi {{ member.first_name }}\n---\n<p>Hello</p>\n"}
_numbers = itertools.count(1)
ZONES = ["UTC", "Europe/Warsaw", "Europe/London", "Africa/Lagos"]


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch, app: App) -> None:
    monkeypatch.setattr(entry_batches, "ENTER_BATCH", 7)
    monkeypatch.setattr(entry_batches, "RUN_BATCH", 5)
    # Full batches of 5, not spread thinner over the worker threads the settings name.
    app.settings = app.settings.model_copy(update={"worker_processes": 1, "worker_threads": 1})


def birthdays_today(app: App, count: int, **fields: object) -> list[int]:
    """`count` members with email consent whose birthday is today in zones a few hours apart."""
    today = app.clock.now()
    made = []
    for n in range(count):
        values: dict[str, object] = {
            "email": f"b{next(_numbers)}@example.com",
            "email_consent": True,
            "time_zone": ZONES[n % len(ZONES)],
            "birth_month": today.month,
            "birth_day": today.day,
        }
        made.append(make_member(app, **{**values, **fields}).id)
    return made


def tick(app: App) -> int:
    with workers(app):
        return enter_date_journeys(app)


def test_a_tick_enters_each_due_member_once_and_runs_every_first_step(
    app: App, tmp_path: Path
) -> None:
    # Given 60 birthdays today (ten entry batches), one tomorrow, and one erased member
    published(app, journey_folder(tmp_path, {"birthday": BIRTHDAY}, TEMPLATES))
    due = birthdays_today(app, 60)
    tomorrow = app.clock.now() + timedelta(days=1)
    make_member(app, birth_month=tomorrow.month, birth_day=tomorrow.day, email_consent=True)
    erased = birthdays_today(app, 1, erased_at=app.clock.now())

    # When the date tick runs, and runs again (a repeated tick)
    first, second = tick(app), tick(app)

    # Then each due member entered once, for this year, and got one greeting
    assert (first, second) == (60, 0)
    rows = enrollments(app)
    assert sorted(e.member_id for e in rows) == sorted(due)
    assert {(e.occurrence, e.state) for e in rows} == {("2026", "completed")}
    sent = messages(app)
    assert sorted(m.member_id for m in sent) == sorted(due)
    assert Counter(m.state for m in sent) == Counter({"sent": 60})
    assert erased[0] not in {e.member_id for e in rows}


def test_two_ticks_at_once_enter_each_member_once(app: App, tmp_path: Path) -> None:
    # Given 45 birthdays today
    published(app, journey_folder(tmp_path, {"birthday": BIRTHDAY}, TEMPLATES))
    due = birthdays_today(app, 45)
    # When two schedulers run the date tick at the same moment
    barrier = threading.Barrier(2)
    entered: list[int] = []
    errors: list[BaseException] = []

    def scheduler() -> None:
        try:
            barrier.wait()
            entered.append(enter_date_journeys(app))
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    with workers(app):
        threads = [threading.Thread(target=scheduler) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    # Then between them they entered each member once, and each got one email
    assert errors == []
    assert sum(entered) == 45
    assert sorted(e.member_id for e in enrollments(app)) == sorted(due)
    assert sorted(m.member_id for m in messages(app)) == sorted(due)


def refusals(app: App) -> dict[int, tuple[str, str]]:
    with app.database.sessions() as session:
        rows = session.scalars(select(EntryRefusal)).all()
    return {r.member_id: (r.reason, r.occurrence) for r in rows}


def test_members_the_tick_turns_away_are_recorded_with_the_reason(
    app: App, clock: FrozenClock, tmp_path: Path
) -> None:
    # Given a birthday journey for members with email consent and a 30-day cooldown
    report = published(app, journey_folder(tmp_path, {"birthday": PICKY_BIRTHDAY}, TEMPLATES))
    welcome = birthdays_today(app, 20)
    no_consent = birthdays_today(app, 15, email_consent=False)
    recent = birthdays_today(app, 10)
    with app.database.transaction() as session:
        for member_id in recent:  # entered five days ago, for another occurrence
            session.add(
                Enrollment(
                    journey_id="birthday",
                    member_id=member_id,
                    occurrence="2025",
                    journey_version_id=_version_id(app),
                    state="completed",
                    context={},
                    entered_at=clock.now() - timedelta(days=5),
                )
            )
    assert report.published

    # When the date tick runs
    entered = tick(app)

    # Then only the audience outside its cooldown entered; the others' reasons are kept
    assert entered == 20
    this_year = {e.member_id for e in enrollments(app) if e.occurrence == "2026"}
    assert this_year == set(welcome)
    reasons = refusals(app)
    assert {m: reasons[m][0] for m in no_consent} == dict.fromkeys(no_consent, "audience")
    assert {m: reasons[m][0] for m in recent} == dict.fromkeys(recent, "cooldown")
    assert {occurrence for _, occurrence in reasons.values()} == {"2026"}
    assert set(reasons) == {*no_consent, *recent}

    # When the journey is paused, more birthdays arrive, and the tick runs again
    with app.database.transaction() as session:
        pause(session, "birthday", by="ops@example.com", now=clock.now())
    late = birthdays_today(app, 12)
    clock.advance(timedelta(minutes=1))

    # Then nobody entered, and everyone offered is recorded as turned away by the pause
    assert tick(app) == 0
    reasons = refusals(app)
    assert {m: reasons[m][0] for m in [*late, *no_consent, *recent]} == dict.fromkeys(
        [*late, *no_consent, *recent], "paused"
    )
    assert {e.member_id for e in enrollments(app) if e.occurrence == "2026"} == set(welcome)


def _version_id(app: App) -> int:
    from loyalty.models import JourneyVersion

    with app.database.sessions() as session:
        version = session.scalar(select(JourneyVersion.id).order_by(JourneyVersion.id.desc()))
    assert version is not None
    return version


def test_a_cron_tick_enters_its_audience_once_per_fire_time(
    app: App, clock: FrozenClock, tmp_path: Path
) -> None:
    # Given a daily 09:00 UTC journey, 30 members and one erased
    published(app, journey_folder(tmp_path, {"weekly": WEEKLY}, TEMPLATES))
    members = [
        make_member(app, email=f"w{n}@example.com", email_consent=True).id for n in range(30)
    ]
    erased = make_member(app, erased_at=clock.now()).id
    clock.set(datetime(2026, 3, 11, 9, 0, 30, tzinfo=clock.now().tzinfo))

    # When the cron tick runs twice within the minute
    with workers(app):
        first, second = fire_schedules(app), fire_schedules(app)

    # Then each member entered once for this fire time and got one email
    assert (first, second) == (30, 0)
    rows = enrollments(app)
    assert sorted(e.member_id for e in rows) == members
    assert {e.occurrence for e in rows} == {"2026-03-11T09:00:00+00:00"}
    assert sorted(m.member_id for m in messages(app)) == members
    with app.database.sessions() as session:
        assert session.get(Member, erased) is not None
    assert erased not in {e.member_id for e in rows}

    # When the next day's fire time comes, everyone enters again (every_time)
    clock.set(datetime(2026, 3, 12, 9, 1, tzinfo=clock.now().tzinfo))
    with workers(app):
        assert fire_schedules(app) == 30
    assert len(enrollments(app)) == 60


def tick_statements(app: App) -> tuple[int, int]:
    """(members entered, SQL statements the tick itself ran) of one date tick."""
    tick_thread = threading.get_ident()
    statements: list[str] = []

    def count(*args: object) -> None:
        if threading.get_ident() == tick_thread:
            statements.append(str(args[2]))

    event.listen(app.database.engine, "before_cursor_execute", count)
    try:
        entered = tick(app)
    finally:
        event.remove(app.database.engine, "before_cursor_execute", count)
    return entered, len(statements)


def test_a_ticks_statements_do_not_grow_with_its_due_members(
    app: App, clock: FrozenClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a birthday journey with an audience and a cooldown, and batches of 100
    monkeypatch.setattr(entry_batches, "ENTER_BATCH", 100)
    published(app, journey_folder(tmp_path, {"birthday": PICKY_BIRTHDAY}, TEMPLATES))
    assert tick(app) == 0  # the published version read once, as a running scheduler has it
    # When a tick finds 5 birthdays (2 turned away), and the next day's finds 60 (20 turned away)
    birthdays_today(app, 3)
    birthdays_today(app, 2, email_consent=False)
    few = tick_statements(app)
    clock.advance(timedelta(days=1))
    birthdays_today(app, 40)
    birthdays_today(app, 20, email_consent=False)
    many = tick_statements(app)
    # Then both ticks ran the same statements: one scan, then one batch's queries
    assert (few[0], many[0]) == (3, 40)
    assert many[1] == few[1]
