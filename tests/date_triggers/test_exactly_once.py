"""Scanning twice, or from two threads at once, enters each member once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from automations.definition.models import DateTrigger
from automations.triggers.date_scan import DueEntry, due_date_entries
from loyalty.db import Database
from tests.conftest import make_settings

from .support import JOURNEY, add_member, enroll, enrollments, publish

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
ZONES = ["Europe/Warsaw", "America/New_York", "Australia/Sydney", "Asia/Kolkata", None]
BIRTHDAY = DateTrigger(type="date", field="birthday")


def _members(database: Database) -> int:
    with database.transaction() as session:
        for n in range(40):
            add_member(
                session, time_zone=ZONES[n % len(ZONES)], birth_month=6, birth_day=14 + n % 3
            )
        return publish(session)


def _scan_and_enroll(database: Database, version: int, now: datetime) -> list[DueEntry]:
    with database.transaction() as session:
        entries = due_date_entries(session, JOURNEY, BIRTHDAY, now, make_settings(database))
        enroll(session, version, entries, now)
    return entries


def test_a_second_scan_finds_nothing_new(database: Database) -> None:
    # Given members with birthdays around today in several zones
    version = _members(database)
    # When the scan runs and enters them, then runs again (a tick delivered twice)
    first = _scan_and_enroll(database, version, NOW)
    with database.sessions() as session:
        after_first = enrollments(session)
    second = _scan_and_enroll(database, version, NOW + timedelta(seconds=1))
    # Then the second scan finds nobody and the enrollments did not change
    assert first
    assert second == []
    with database.sessions() as session:
        assert enrollments(session) == after_first
    assert {(m, o) for m, o, _ in after_first} == {(e.member_id, e.occurrence) for e in first}


def test_two_scans_at_once_leave_one_enrollment_each(database: Database) -> None:
    # Given the same members, and what a single scan would enter
    version = _members(database)
    with database.sessions() as session:
        expected = due_date_entries(session, JOURNEY, BIRTHDAY, NOW, make_settings(database))
    # When two schedulers scan and enter at the same moment
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def scheduler() -> None:
        try:
            barrier.wait()
            _scan_and_enroll(database, version, NOW)
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then each due member holds exactly one enrollment for the occurrence
    assert errors == []
    with database.sessions() as session:
        rows = enrollments(session)
    assert sorted((m, o) for m, o, _ in rows) == [(e.member_id, e.occurrence) for e in expected]
    assert len(rows) == len(expected) > 0
