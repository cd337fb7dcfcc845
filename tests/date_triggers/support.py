"""Rows for date-scan tests: members, lots, a published journey and enrollments."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from automations.triggers.date_scan import DueEntry
from loyalty.db import insert_ignore
from loyalty.models import Enrollment, JourneyVersion, LedgerEntry, Member

JOURNEY = "date-journey"
CREATED = datetime(2019, 1, 1, tzinfo=UTC)

_numbers = itertools.count(1)


def add_member(session: Session, **fields: Any) -> int:
    """Insert a member with quiet defaults; returns its id."""
    number = next(_numbers)
    values: dict[str, Any] = {
        "external_id": f"d-{number}",
        "tier": "bronze",
        "referral_code": f"R{number:08d}",
        "enrolled_at": CREATED,
        "created_at": CREATED,
        "updated_at": CREATED,
    }
    values.update(fields)
    member = Member(**values)
    session.add(member)
    session.flush()
    return member.id


def add_lot(session: Session, member_id: int, expires_at: datetime, remaining: int = 100) -> None:
    """A points lot of the member's, with `remaining` points left."""
    session.add(
        LedgerEntry(
            member_id=member_id,
            delta=100,
            kind="earn",
            reason="test",
            idempotency_key=f"lot-{next(_numbers)}",
            expires_at=expires_at,
            remaining=remaining,
            created_at=CREATED,
        )
    )
    session.flush()


def publish(session: Session, journey_id: str = JOURNEY) -> int:
    """A journey version row, for the enrollments' foreign key."""
    version = JourneyVersion(
        journey_id=journey_id,
        version=1,
        content_hash="0" * 64,
        definition={},
        published_at=CREATED,
    )
    session.add(version)
    session.flush()
    return version.id


def enroll(session: Session, version_id: int, entries: Iterable[DueEntry], now: datetime) -> int:
    """Enter the members the way the engine does: one row per key, duplicates ignored."""
    rows: list[dict[str, Any]] = [
        {
            "journey_id": JOURNEY,
            "member_id": entry.member_id,
            "occurrence": entry.occurrence,
            "journey_version_id": version_id,
            "state": "active",
            "current_step": None,
            "next_run_at": None,
            "context": {},
            "entered_at": now,
            "exited_at": None,
            "exit_reason": None,
            "converted_at": None,
        }
        for entry in entries
    ]
    return insert_ignore(session, Enrollment, rows, ["journey_id", "member_id", "occurrence"])


def enrollments(session: Session) -> list[tuple[int, str, datetime]]:
    """(member, occurrence, entered_at) of every enrollment row, duplicates kept."""
    rows = session.execute(
        select(Enrollment.member_id, Enrollment.occurrence, Enrollment.entered_at)
    ).all()
    return sorted((m, o, e) for m, o, e in rows)


def wipe(session: Session) -> None:
    """Empty the tables these tests write, between Hypothesis examples."""
    for model in (Enrollment, JourneyVersion, LedgerEntry, Member):
        session.execute(delete(model))


def brute_force_window(
    fire_day: Any, at: time, zone: Any
) -> tuple[datetime | None, datetime | None]:
    """(first instant on `fire_day` with wall time >= `at`, end of that local day).

    Independent of the code under test: it walks the clock instead of converting
    wall times. Steps of 15 minutes (every offset and change in use is a multiple
    of that), walked minute by minute where the wall time may have reached `at`
    or where the offset changed (the wall clock can go back within a step).
    """
    coarse, fine = timedelta(minutes=15), timedelta(minutes=1)

    def qualifies(instant: datetime) -> bool:
        wall = instant.astimezone(zone)
        return bool(wall.date() == fire_day and wall.time().replace(fold=0) >= at)

    instant = datetime.combine(fire_day, time(0), UTC) - timedelta(hours=15)
    while instant.astimezone(zone).date() < fire_day:
        instant += coarse
    at = at.replace(fold=0)
    fire: datetime | None = None
    previous = instant - coarse
    while True:
        wall = instant.astimezone(zone)
        changed = previous.astimezone(zone).utcoffset() != wall.utcoffset()
        if fire is None and (changed or qualifies(instant)):
            fire = next(
                (previous + fine * n for n in range(1, 16) if qualifies(previous + fine * n)),
                None,
            )
        if wall.date() > fire_day:
            return fire, instant
        previous = instant
        instant += coarse
