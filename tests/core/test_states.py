"""States are closed sets: the database refuses a value outside its enum, on both backends."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Any

import pytest
from sqlalchemy import func, inspect, select, text, update
from sqlalchemy.exc import IntegrityError

from loyalty.app import App
from loyalty.db import Database, downgrade, upgrade
from loyalty.models import Enrollment, JourneyVersion, LedgerEntry, Message, Referral, SyncCursor
from loyalty.states import (
    EnrollmentState,
    LedgerKind,
    MessageState,
    ReferralStatus,
    SyncDirection,
)
from tests.factories import make_member

#: table → (column, its enum): every column typed by loyalty.states.
CHECKED: dict[str, tuple[str, type[StrEnum]]] = {
    "messages": ("state", MessageState),
    "enrollments": ("state", EnrollmentState),
    "referrals": ("status", ReferralStatus),
    "points_ledger": ("kind", LedgerKind),
    "sync_cursors": ("direction", SyncDirection),
}


def journey_version(app: App) -> int:
    with app.database.transaction() as session:
        version = JourneyVersion(
            journey_id="promo",
            version=1,
            content_hash="0" * 64,
            definition={},
            published_at=app.clock.now(),
        )
        session.add(version)
        session.flush()
        return version.id


def enrollment_row(app: App, member_id: int, version_id: int, **fields: Any) -> dict[str, Any]:
    return {
        "journey_id": "promo",
        "member_id": member_id,
        "occurrence": "1",
        "journey_version_id": version_id,
        "state": EnrollmentState.ACTIVE,
        "context": {},
        "entered_at": app.clock.now(),
        **fields,
    }


def message_row(app: App, member_id: int, **fields: Any) -> dict[str, Any]:
    now = app.clock.now()
    return {
        "idempotency_key": "k-1",
        "member_id": member_id,
        "channel": "email",
        "purpose": "marketing",
        "state": MessageState.PENDING,
        "attempts": 0,
        "decisions": {},
        "created_at": now,
        "updated_at": now,
        **fields,
    }


def test_a_message_state_outside_the_enum_is_refused(app: App) -> None:
    member = make_member(app)
    with pytest.raises(IntegrityError), app.database.transaction() as session:
        session.add(Message(**message_row(app, member.id, state="bogus")))
    with app.database.transaction() as session:
        message = Message(**message_row(app, member.id))
        session.add(message)
    with pytest.raises(IntegrityError), app.database.transaction() as session:
        session.execute(update(Message).where(Message.id == message.id).values(state="bogus"))
    # Every state of the machine is accepted.
    for state in MessageState:
        with app.database.transaction() as session:
            session.execute(update(Message).where(Message.id == message.id).values(state=state))
    with app.database.sessions() as session:
        assert session.scalar(select(Message.state)) == MessageState.UNKNOWN


def test_an_enrollment_state_outside_the_enum_is_refused(app: App) -> None:
    member = make_member(app)
    version_id = journey_version(app)
    with pytest.raises(IntegrityError), app.database.transaction() as session:
        session.add(Enrollment(**enrollment_row(app, member.id, version_id, state="bogus")))
    with app.database.transaction() as session:
        enrollment = Enrollment(**enrollment_row(app, member.id, version_id))
        session.add(enrollment)
    for state in EnrollmentState:
        with app.database.transaction() as session:
            row = session.get(Enrollment, enrollment.id)
            assert row is not None
            row.state = state
    with pytest.raises(IntegrityError), app.database.transaction() as session:
        session.execute(
            update(Enrollment).where(Enrollment.id == enrollment.id).values(state="bogus")
        )
    with app.database.sessions() as session:
        assert session.scalar(select(Enrollment.state)) == EnrollmentState.CONVERTED


def test_referral_status_ledger_kind_and_cursor_direction_are_closed_too(app: App) -> None:
    referrer, referee = make_member(app), make_member(app)
    now = app.clock.now()
    with pytest.raises(IntegrityError), app.database.transaction() as session:
        session.add(
            Referral(
                referrer_id=referrer.id,
                referee_id=referee.id,
                code="X",
                status="bogus",
                created_at=now,
            )
        )
    with pytest.raises(IntegrityError), app.database.transaction() as session:
        session.add(
            LedgerEntry(
                member_id=referrer.id,
                delta=5,
                kind="gift",
                reason="r",
                idempotency_key="k",
                remaining=5,
                created_at=now,
            )
        )
    with pytest.raises(IntegrityError), app.database.transaction() as session:
        session.add(SyncCursor(crm="hubspot", direction="sideways"))
    with app.database.transaction() as session:
        session.add(
            Referral(
                referrer_id=referrer.id,
                referee_id=referee.id,
                code="X",
                status=ReferralStatus.PENDING,
                created_at=now,
            )
        )
        session.add(SyncCursor(crm="hubspot", direction=SyncDirection.PULL))
    with app.database.sessions() as session:
        assert session.scalar(select(func.count(Referral.id))) == 1
        assert session.scalar(select(func.count()).select_from(SyncCursor)) == 1


def _allowed(database: Database) -> dict[str, tuple[str | None, set[str]]]:
    """table → (constraint name, the values its CHECK constraint allows), as migrated."""
    found = {}
    inspector = inspect(database.engine)
    for table, (column, _) in CHECKED.items():
        [check] = [c for c in inspector.get_check_constraints(table) if column in c["sqltext"]]
        found[table] = (check["name"], set(re.findall(r"'([^']*)'", check["sqltext"])))
    return found


def test_the_migrated_checks_allow_exactly_the_enums(database: Database) -> None:
    assert _allowed(database) == {
        table: (f"ck_{table}_{column}", {member.value for member in enum})
        for table, (column, enum) in CHECKED.items()
    }


def test_the_state_checks_migrate_down_and_up_with_rows_in_place(app: App) -> None:
    member = make_member(app)
    version_id = journey_version(app)
    with app.database.transaction() as session:
        enrollment = Enrollment(**enrollment_row(app, member.id, version_id))
        session.add(enrollment)
        session.flush()
        # A message points at the enrollment: SQLite must rebuild `enrollments` under it.
        session.add(Message(**message_row(app, member.id, enrollment_id=enrollment.id)))
    try:
        downgrade(app.database, "0004")
        inspector = inspect(app.database.engine)
        assert all(inspector.get_check_constraints(table) == [] for table in CHECKED)
        with app.database.transaction() as session:
            session.execute(update(Message).values(state="bogus"))
            session.execute(update(Message).values(state=MessageState.SENT))
    finally:
        upgrade(app.database)
    assert set(_allowed(app.database)) == set(CHECKED)
    with app.database.sessions() as session:
        message = session.scalar(select(Message))
        assert message is not None and message.enrollment_id == enrollment.id
        assert message.state == MessageState.SENT
    with pytest.raises(IntegrityError), app.database.transaction() as session:
        session.execute(update(Enrollment).values(state="bogus"))
    if app.database.is_sqlite:
        with app.database.engine.connect() as connection:
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert connection.execute(text("PRAGMA foreign_key_check")).all() == []


def test_enum_members_are_their_strings() -> None:
    # What lets rows, JSON and tests keep the plain values.
    value: str = MessageState.SENT
    assert value == "sent" and f"{value}" == "sent" and json.dumps(value) == '"sent"'
    assert {value: 1} == {"sent": 1}
