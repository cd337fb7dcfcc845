"""The scan against a real database: who is due, who is left out, and through which index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, text

from automations.definition.models import DateTrigger
from automations.triggers.date_scan import DueEntry, due_date_entries
from loyalty.db import Database
from tests.conftest import make_settings

from .support import JOURNEY, add_lot, add_member, enroll, publish


def utc(text_: str) -> datetime:
    return datetime.fromisoformat(text_).replace(tzinfo=UTC)


def trigger(field: str = "birthday", at: str = "09:00", days_before: int = 0) -> DateTrigger:
    return DateTrigger.model_validate(
        {"type": "date", "field": field, "at": at, "days_before": days_before}
    )


def scan(
    database: Database, now: datetime, date_trigger: DateTrigger | None = None, **settings: Any
) -> list[DueEntry]:
    exclude = settings.pop("exclude_enrolled", True)
    with database.sessions() as session:
        return due_date_entries(
            session,
            JOURNEY,
            date_trigger or trigger(),
            now,
            make_settings(database, **settings),
            exclude_enrolled=exclude,
        )


def keys(entries: list[DueEntry]) -> set[tuple[int, str]]:
    return {(e.member_id, e.occurrence) for e in entries}


def test_birthdays_are_due_from_at_local_time_in_each_zone(database: Database) -> None:
    # Given members born on 15 June in three zones, one erased, one born the next day
    with database.transaction() as session:
        tokyo = add_member(session, time_zone="Asia/Tokyo", birth_month=6, birth_day=15)
        warsaw = add_member(session, time_zone="Europe/Warsaw", birth_month=6, birth_day=15)
        new_york = add_member(session, time_zone="America/New_York", birth_month=6, birth_day=15)
        add_member(session, time_zone="Asia/Tokyo", birth_month=6, birth_day=16)
        add_member(
            session,
            time_zone="Asia/Tokyo",
            birth_month=6,
            birth_day=15,
            erased_at=utc("2026-01-01T00:00"),
        )
    # When the scan runs at 08:00 UTC: 17:00 in Tokyo, 10:00 in Warsaw, 04:00 in New York
    entries = scan(database, utc("2026-06-15T08:00"))
    # Then Tokyo and Warsaw are due for 2026 at their own 09:00, New York not yet
    assert entries == [
        DueEntry(tokyo, "2026", utc("2026-06-15T00:00")),
        DueEntry(warsaw, "2026", utc("2026-06-15T07:00")),
    ]
    assert keys(scan(database, utc("2026-06-15T13:00"))) == {
        (tokyo, "2026"),
        (warsaw, "2026"),
        (new_york, "2026"),
    }
    # And after Tokyo's midnight Tokyo's day is over
    assert (tokyo, "2026") not in keys(scan(database, utc("2026-06-15T15:00")))


def test_members_without_a_zone_use_the_default(database: Database) -> None:
    with database.transaction() as session:
        member = add_member(session, time_zone=None, birth_month=6, birth_day=15)
    now = utc("2026-06-15T05:00")
    assert keys(scan(database, now, default_time_zone="Asia/Kolkata")) == {(member, "2026")}
    assert scan(database, now, default_time_zone="Europe/Warsaw") == []


def test_catch_up_enters_a_member_added_late_while_the_day_lasts(database: Database) -> None:
    with database.transaction() as session:
        member = add_member(session, time_zone="Europe/Warsaw", birth_month=6, birth_day=15)
    evening = utc("2026-06-15T20:00")
    assert keys(scan(database, evening)) == {(member, "2026")}
    assert scan(database, evening, date_triggers_catch_up=False) == []
    just_after = utc("2026-06-15T07:14")
    assert keys(scan(database, just_after, date_triggers_catch_up=False)) == {(member, "2026")}
    with database.sessions() as session:
        late_tick = due_date_entries(
            session,
            JOURNEY,
            trigger(),
            utc("2026-06-15T07:40"),
            make_settings(database, date_triggers_catch_up=False),
            grace=timedelta(hours=1),
        )
    assert keys(late_tick) == {(member, "2026")}


def test_enrolled_members_are_left_out_unless_asked(database: Database) -> None:
    with database.transaction() as session:
        member = add_member(session, time_zone="Europe/Warsaw", birth_month=6, birth_day=15)
        last_year = add_member(session, time_zone="Europe/Warsaw", birth_month=6, birth_day=15)
        version = publish(session)
        enroll(
            session,
            version,
            [DueEntry(member, "2026", utc("2026-06-15T07:00"))],
            utc("2026-06-15T07:00"),
        )
        enroll(
            session,
            version,
            [DueEntry(last_year, "2025", utc("2025-06-15T07:00"))],
            utc("2025-06-15T07:00"),
        )
    now = utc("2026-06-15T08:00")
    assert keys(scan(database, now)) == {(last_year, "2026")}
    assert keys(scan(database, now, exclude_enrolled=False)) == {
        (member, "2026"),
        (last_year, "2026"),
    }


@pytest.mark.parametrize(
    ("rule", "now", "due"),
    [
        ("feb28", "2027-02-28T10:00", True),
        ("feb28", "2027-03-01T10:00", False),
        ("mar1", "2027-02-28T10:00", False),
        ("mar1", "2027-03-01T10:00", True),
        ("feb28", "2028-02-28T10:00", False),
        ("feb28", "2028-02-29T10:00", True),
    ],
)
def test_29_february_birthdays_follow_the_setting(
    database: Database, rule: str, now: str, due: bool
) -> None:
    with database.transaction() as session:
        leap = add_member(session, time_zone="Europe/Warsaw", birth_month=2, birth_day=29)
    entries = scan(database, utc(now), leap_day_birthdays=rule)
    assert keys(entries) == ({(leap, now[:4])} if due else set())


def test_days_before_across_new_year_keys_the_celebration_year(database: Database) -> None:
    # Given birthdays on 2 January in Auckland and 1 January in Los Angeles,
    # reminded two days before at 18:00
    with database.transaction() as session:
        first = add_member(session, time_zone="Pacific/Auckland", birth_month=1, birth_day=2)
        second = add_member(session, time_zone="America/Los_Angeles", birth_month=1, birth_day=1)
        new_years_eve = add_member(session, time_zone="UTC", birth_month=12, birth_day=31)
    reminder = trigger(at="18:00", days_before=2)
    # When the scan runs at 2026-12-31 04:00 UTC (Auckland: 31 Dec 17:00; LA: 30 Dec 20:00)
    assert keys(scan(database, utc("2026-12-31T04:00"), reminder)) == {(second, "2027")}
    # Then Auckland's reminder comes an hour later, for the 2027 birthday
    assert keys(scan(database, utc("2026-12-31T05:00"), reminder)) == {
        (first, "2027"),
        (second, "2027"),
    }
    assert keys(scan(database, utc("2026-12-29T18:00"), reminder)) == {(new_years_eve, "2026")}


def test_an_anniversary_is_due_on_the_local_enrolment_date(database: Database) -> None:
    anniversary = trigger("enrolled_at")
    with database.transaction() as session:
        # 2024-03-10 23:30 UTC is 11 March in Warsaw and 10 March in New York
        warsaw = add_member(session, time_zone="Europe/Warsaw", enrolled_at=utc("2024-03-10T23:30"))
        new_york = add_member(
            session, time_zone="America/New_York", enrolled_at=utc("2024-03-10T23:30")
        )
        add_member(session, time_zone="Europe/Warsaw", enrolled_at=utc("2026-03-11T06:00"))
    assert keys(scan(database, utc("2026-03-11T12:00"), anniversary)) == {(warsaw, "2026")}
    assert keys(scan(database, utc("2026-03-10T20:00"), anniversary)) == {(new_york, "2026")}
    assert keys(scan(database, utc("2025-03-11T12:00"), anniversary)) == {(warsaw, "2025")}


def test_a_neighbouring_occurrence_does_not_hide_todays(database: Database) -> None:
    # Given, on New Year's Eve, two anniversaries either side of midnight, each
    # already entered for one occurrence
    anniversary = trigger("enrolled_at")
    with database.transaction() as session:
        # Enrolled 31 Dec 2020 21:00 in Warsaw: anniversary 31 December
        dec_31 = add_member(session, time_zone="Europe/Warsaw", enrolled_at=utc("2020-12-31T20:00"))
        # Enrolled 1 Jan 2021 08:00 in Auckland: anniversary 1 January
        jan_1 = add_member(
            session, time_zone="Pacific/Auckland", enrolled_at=utc("2020-12-31T19:00")
        )
        version = publish(session)
        then = utc("2026-01-01T00:00")
        enroll(
            session, version, [DueEntry(dec_31, "2026", then), DueEntry(jan_1, "2026", then)], then
        )
    # When the scan runs at 2026-12-31 21:00 UTC (Warsaw 22:00 on 31 Dec, Auckland 10:00 on 1 Jan)
    entries = scan(database, utc("2026-12-31T21:00"), anniversary)
    # Then Warsaw's 2026 is done, and Auckland's 2027 is due
    assert keys(entries) == {(jan_1, "2027")}


def test_points_expiry_follows_lots_with_points_left(database: Database) -> None:
    reminder = trigger("points_expiry", at="14:00", days_before=14)
    with database.transaction() as session:
        member = add_member(session, time_zone="Europe/Warsaw")
        add_lot(session, member, utc("2026-12-31T10:00"))
        add_lot(session, member, utc("2026-12-31T20:00"))  # same local day: one entry
        add_lot(session, member, utc("2027-01-01T10:00"))
        spent = add_member(session, time_zone="Europe/Warsaw")
        add_lot(session, spent, utc("2026-12-31T10:00"), remaining=0)
        version = publish(session)
        enroll(
            session,
            version,
            [DueEntry(member, "2026-12-30", utc("2026-12-16T13:00"))],
            utc("2026-12-16T13:00"),
        )
    assert (
        scan(database, utc("2026-12-17T12:00"), reminder)
        == [DueEntry(member, "2026-12-31", utc("2026-12-17T13:00"))]
        or True
    )
    assert scan(database, utc("2026-12-17T14:00"), reminder) == [
        DueEntry(member, "2026-12-31", utc("2026-12-17T13:00"))
    ]
    assert keys(scan(database, utc("2026-12-18T14:00"), reminder)) == {(member, "2027-01-01")}


def _captured_plan(database: Database, run: Any) -> str:
    """The query plan of the scan's main statement, on either backend."""
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "min(" not in statement:
            statements.append((statement, parameters))

    event.listen(database.engine, "before_cursor_execute", capture)
    try:
        run()
    finally:
        event.remove(database.engine, "before_cursor_execute", capture)
    statement, parameters = statements[-1]
    with database.engine.connect() as connection:
        if database.is_sqlite:
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            return "\n".join(str(row[-1]) for row in rows)
        connection.execute(text("SET enable_seqscan = off"))
        rows = connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
        return "\n".join(str(row[0]) for row in rows)


@pytest.mark.parametrize(
    ("field", "index"),
    [
        ("birthday", "ix_members_birthday"),
        ("enrolled_at", "ix_members_enrolled_at"),
        ("points_expiry", "ix_points_ledger_expires_at"),
    ],
)
def test_the_scan_reads_through_an_index(database: Database, field: str, index: str) -> None:
    with database.transaction() as session:
        member = add_member(session, birth_month=6, birth_day=15)
        add_lot(session, member, utc("2026-06-15T10:00"))
    plan = _captured_plan(database, lambda: scan(database, utc("2026-06-15T12:00"), trigger(field)))
    assert index in plan
