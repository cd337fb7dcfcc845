"""The points-expiring amount: lots expiring on one local day of the member count together."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from automations.preview import preview
from crm_sync.values import member_values
from loyalty import ledger
from loyalty.app import App
from loyalty.event_types import EventInput
from loyalty.members import first_expiring_day, member_data
from loyalty.models import Member
from tests.engine.helpers import journey_folder, messages, published, send_event
from tests.factories import make_member

ROOT = Path(__file__).resolve().parents[2]
# On the wall in New York (UTC-5 in winter): Dec 31 18:00, Dec 31 22:00, Jan 1 01:00.
EVENING = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
LATE_EVENING = datetime(2027, 1, 1, 3, 0, tzinfo=UTC)
NEXT_NIGHT = datetime(2027, 1, 1, 6, 0, tzinfo=UTC)


def test_lots_on_one_local_day_expire_together() -> None:
    lots = [(NEXT_NIGHT, 100), (LATE_EVENING, 250), (EVENING, 300)]

    assert first_expiring_day(lots, "America/New_York") == (550, EVENING)
    # In UTC the second lot falls on the next day with the third.
    assert first_expiring_day(lots, "UTC") == (300, EVENING)
    assert first_expiring_day([(EVENING, 0)], "UTC") is None


def _member_with_two_orders_on_new_years_eve(app: App, time_zone: str | None) -> Member:
    member = make_member(app, external_id="ann", first_name="Ann", time_zone=time_zone)
    now = app.clock.now()
    with app.database.transaction() as session:
        row = session.get(Member, member.id)
        assert row is not None
        for n, (points, expires_at) in enumerate(
            [(300, EVENING), (250, LATE_EVENING), (100, NEXT_NIGHT)]
        ):
            ledger.apply(
                session,
                row,
                "earn",
                points,
                key=f"order:{n}",
                reason="order",
                now=now,
                thresholds=app.settings.tier_thresholds,
                expires_at=expires_at,
            )
    return member


def test_the_reminder_says_the_sum_of_one_local_days_lots(app: App) -> None:
    # Given two orders whose points expire on one evening in New York, and one the next day
    _member_with_two_orders_on_new_years_eve(app, "America/New_York")
    app = App(
        app.settings.model_copy(update={"journeys_dir": ROOT / "journeys"}),
        app.database,
        app.clock,
    )

    # When the points-expiring reminder is previewed
    [sms] = preview(app, "points_expiring", "ann", "reminder_sms")

    # Then it says their sum
    assert sms["body"].startswith("550 of your points expire on Dec 31.")


def test_members_without_a_zone_count_days_in_the_programs_zone(app: App) -> None:
    member = _member_with_two_orders_on_new_years_eve(app, None)
    now = app.clock.now()
    with app.database.sessions() as session:
        row = session.get(Member, member.id)
        assert row is not None
        local = member_data(
            session, row, now=now, public_base_url="https://x.test", default_zone="America/New_York"
        )
        utc = member_data(
            session, row, now=now, public_base_url="https://x.test", default_zone="UTC"
        )
        bulk = member_values(
            session,
            [row],
            now=now,
            public_base_url="https://x.test",
            default_zone="America/New_York",
        )
    assert (local["points_expiring"], local["points_expiring_at"]) == (550, EVENING)
    assert (utc["points_expiring"], utc["points_expiring_at"]) == (300, EVENING)
    assert bulk[member.id]["points_expiring"] == 550


def test_journeys_count_a_zoneless_members_expiry_day_in_the_programs_zone(
    app: App, tmp_path: Path
) -> None:
    # Given a member without a zone of their own, in a program that lives in New York
    _member_with_two_orders_on_new_years_eve(app, None)
    app = App(
        app.settings.model_copy(update={"default_time_zone": "America/New_York"}),
        app.database,
        app.clock,
    )
    journey = """
id: expiry_note
name: Expiry note
status: active
trigger: {type: event, event: member.enrolled}
audience: {field: points_expiring, gte: 550}
entry: {every_time: true}
steps:
  - id: note
    type: update_crm
    properties: {loyalty_expiring: "{{ member.points_expiring }}"}
"""
    published(app, journey_folder(tmp_path, {"expiry_note": journey}, {}))

    # When an event enters them (the audience is read by the router, the step by the runner)
    send_event(app, EventInput(type="member.enrolled", member="ann", id="e-1"))

    # Then both read New York's evening as one day: 300 + 250
    [note] = messages(app)
    assert note.decisions["properties"] == {"loyalty_expiring": "550"}
