"""The simulator forecasts what the engine then does: the same sends and awards, day by day.

A live database with members in flight is simulated over a few days; then the
real engine runs on that database over the same days (its clock moved the way
the scheduler's ticks see it, the same events arriving), and both must have sent
the same messages and awarded the same points.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from automations import runtime
from automations.intake import emit
from automations.runtime.broker import build_broker, drain, embedded_worker
from automations.runtime.ticks import (
    enter_date_journeys,
    expire_points,
    fire_schedules,
    relay_messages,
    wake_enrollments,
)
from automations.simulate import simulate
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.event_types import EventInput
from loyalty.models import Enrollment, LedgerEntry, Member, Message, Suppression
from loyalty.states import EnrollmentState
from tests.engine.helpers import EMAIL, journey_folder, published, send_event
from tests.engine.helpers import workers as engine_workers
from tests.factories import make_member

NUDGE = """
id: nudge
name: Order nudge
status: active
locales: [en]
trigger: {type: event, event: order.completed}
entry: {every_time: true}
goal: {event: reward.redeemed, within: 7d}
steps:
  - {id: bonus, type: award_points, amount: 25, reason: Thanks}
  - {id: thanks_sms, type: send_sms, template: thanks}
  - {id: pause, type: wait, duration: 2d}
  - {id: thanks_mail, type: send_email, template: thanks}
"""
WELCOME = """
id: welcome
name: Welcome
status: active
locales: [en]
trigger: {type: event, event: member.enrolled}
entry: {once: true}
steps:
  - {id: hello, type: send_email, template: hello}
  - id: first_order
    type: wait
    until_event: {event: order.completed, timeout: 3d}
    on_event: end
    on_timeout: nudge_bonus
  - {id: nudge_bonus, type: award_points, amount: 50, reason: Welcome bonus}
  - {id: nudge_mail, type: send_email, template: hello}
"""
BIRTHDAY = """
id: birthday
name: Birthday
status: active
locales: [en]
trigger: {type: date, field: birthday, at: "09:00"}
entry: {once_per: year}
steps:
  - {id: gift, type: award_points, amount: 100, reason: Birthday}
  - {id: card, type: send_email, template: hello}
  - {id: sms_ok, type: branch, if: {consent: sms}, then: card_sms, else: end}
  - {id: card_sms, type: send_sms, template: thanks}
"""
TEMPLATES = {
    "en/thanks.sms": "Thanks {{ member.first_name }}! Reply STOP to opt out",
    "en/thanks.email": EMAIL.replace("{{ body }}", "Thanks"),
    "en/hello.email": EMAIL.replace("{{ body }}", "Hello"),
}
#: The database is live until here; the simulation and the engine then run six days.
NOW = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)
DAYS = 6
#: How far apart the real engine's ticks run. The scheduler's are closer, but days are
#: compared and nothing here falls due within half an hour of midnight UTC.
TICK = timedelta(minutes=30)
PEOPLE = {
    # external id: zone, birthday (month, day), SMS consent, phone
    "ann": ("America/New_York", (3, 13), True, "+14155550100"),
    "bob": ("America/New_York", (7, 1), True, "+14155550101"),
    "cal": ("Europe/Warsaw", (3, 14), True, "+48500100200"),
    "dan": ("Europe/Warsaw", (3, 10), False, None),
    "eve": ("America/Los_Angeles", (3, 15), True, "+14155550104"),
}
#: What happens after NOW, on tick boundaries: (at, member, type, id).
FUTURE = [
    (NOW + timedelta(hours=6), "bob", "order.completed", "o-bob"),
    (NOW + timedelta(days=1, hours=1), "eve", "member.enrolled", "j-eve"),
    (NOW + timedelta(days=1, hours=3), "ann", "reward.redeemed", "r-ann"),
    (NOW + timedelta(days=2, hours=2), "eve", "order.completed", "o-eve"),
    (NOW + timedelta(days=3, hours=4), "cal", "order.completed", "o-cal-2"),
]


def _event(at: datetime, member: str, kind: str, event_id: str) -> EventInput:
    data: dict[str, Any] = {}
    if kind == "order.completed":
        data = {"order_id": event_id, "total": 20, "currency": "USD"}
    elif kind == "reward.redeemed":
        data = {"points": 10}
    return EventInput(type=kind, member=member, id=event_id, at=at, data=data)


@pytest.fixture
def live(app: App, tmp_path: Path) -> Iterator[App]:
    """Given a program in use: ann and cal mid-nudge, dan waiting for a first order, bob's SMS
    suppressed, and the birthday journey already run for dan today."""
    folder = journey_folder(
        tmp_path, {"nudge": NUDGE, "welcome": WELCOME, "birthday": BIRTHDAY}, TEMPLATES
    )
    live = App(app.settings.model_copy(update={"journeys_dir": folder}), app.database, app.clock)
    assert isinstance(live.clock, FrozenClock)
    live.clock.set(NOW - timedelta(hours=8))
    published(live, folder)
    for name, (zone, (month, day), sms, phone) in PEOPLE.items():
        make_member(
            live,
            external_id=name,
            first_name=name.title(),
            email=f"{name}@example.com",
            phone=phone,
            email_consent=True,
            sms_consent=sms,
            time_zone=zone,
            birth_month=month,
            birth_day=day,
        )
    for name, hours in (("ann", 6), ("cal", 5)):
        at = NOW - timedelta(hours=hours)
        live.clock.set(at)
        send_event(live, _event(at, name, "order.completed", f"real-{name}"))
    live.clock.set(NOW - timedelta(hours=4))
    with engine_workers(live):
        enter_date_journeys(live)  # 11:00 in Warsaw: dan's birthday
    live.clock.set(NOW - timedelta(hours=2))
    send_event(live, _event(live.clock.now(), "dan", "member.enrolled", "j-dan"))
    live.clock.set(NOW)
    with engine_workers(live):
        relay_messages(live)  # ann's SMS, deferred by quiet hours in New York, goes now
    with live.database.transaction() as session:
        session.add(
            Suppression(channel="sms", address="+14155550101", reason="stop", created_at=NOW)
        )
    with live.database.sessions() as session:
        waiting = session.scalar(
            select(func.count()).where(Enrollment.state == EnrollmentState.WAITING)
        )
    assert waiting == 3  # ann's and cal's nudges, dan's welcome
    with live.database.sessions() as session:
        birthdays = session.scalars(
            select(Enrollment.state).where(Enrollment.journey_id == "birthday")
        )
        assert list(birthdays) == [EnrollmentState.COMPLETED]
    yield live
    runtime.configure(app)


def _sends_and_awards_after(app: App, messages_after: int, ledger_after: int) -> list[Any]:
    """(day, member, journey, step, what, detail) of each message and award after the ids."""
    rows: list[tuple[Any, ...]] = []
    with app.database.sessions() as session:
        names = dict(session.execute(select(Member.id, Member.external_id)).all())
        for m in session.scalars(select(Message).where(Message.id > messages_after)):
            at = m.sent_at or m.updated_at
            rows.append(
                (at.date(), names[m.member_id], m.journey_id, m.step_id, m.channel, m.state)
            )
        for entry in session.scalars(
            select(LedgerEntry).where(
                LedgerEntry.id > ledger_after, LedgerEntry.idempotency_key.like("enrollment:%")
            )
        ):
            enrollment = session.get(Enrollment, int(entry.idempotency_key.split(":")[1]))
            assert enrollment is not None
            step = entry.idempotency_key.split(":", 2)[2]
            rows.append(
                (
                    entry.created_at.date(),
                    names[entry.member_id],
                    enrollment.journey_id,
                    step,
                    "points",
                    entry.delta,
                )
            )
    return sorted(rows)


def _forecast(records: list[dict[str, Any]]) -> list[Any]:
    rows: list[tuple[Any, ...]] = []
    for r in records:
        day = datetime.fromisoformat(r["at"]).date()
        if r["action"] == "award_points":
            rows.append((day, r["member"], r["journey"], r["step"], "points", r["points"]))
        elif "channel" in r:
            rows.append((day, r["member"], r["journey"], r["step"], r["channel"], r["state"]))
    return sorted(rows)


def _run_engine(app: App, start: datetime, end: datetime) -> None:
    """The real engine from `start` to `end`: the events as they arrive, the ticks every TICK."""
    assert isinstance(app.clock, FrozenClock)
    runtime.configure(app)
    broker = build_broker(app.settings)
    arriving = sorted(FUTURE)
    with embedded_worker(broker, threads=2):
        now = start
        while now <= end:
            app.clock.set(now)
            while arriving and arriving[0][0] <= now:
                emit(app, _event(*arriving.pop(0)))
                drain(broker)
            for tick in (
                enter_date_journeys,
                fire_schedules,
                wake_enrollments,
                relay_messages,
                expire_points,
            ):
                tick(app)
                drain(broker)
            now += TICK


def test_the_simulation_matches_what_the_engine_then_does(live: App, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        "".join(
            json.dumps(
                {
                    "type": kind,
                    "member": member,
                    "id": event_id,
                    "at": at.isoformat(),
                    "data": _event(at, member, kind, event_id).data,
                }
            )
            + "\n"
            for at, member, kind, event_id in FUTURE
        ),
        encoding="utf-8",
    )
    end = NOW + timedelta(days=DAYS)
    with live.database.sessions() as session:
        messages_before = session.scalar(select(func.max(Message.id))) or 0
        ledger_before = session.scalar(select(func.max(LedgerEntry.id))) or 0

    # When the simulator forecasts the six days from the live database
    forecast = simulate(live, start=NOW, end=end, events_file=events)
    assert forecast.problems == []

    # and then the real engine lives through them
    _run_engine(live, NOW, end)

    # Then both sent the same messages and awarded the same points, day by day
    happened = _sends_and_awards_after(live, messages_before, ledger_before)
    assert _forecast(forecast.records) == happened
    # and the forecast covers each kind of moment: in-flight waits, events, a date journey
    steps = {(member, journey, step) for _, member, journey, step, _, _ in happened}
    assert {
        ("cal", "nudge", "thanks_mail"),  # an in-flight wait ending
        ("dan", "welcome", "nudge_bonus"),  # an in-flight event wait timing out
        ("eve", "welcome", "hello"),  # an event during the period
        ("ann", "birthday", "gift"),  # a date journey
        ("bob", "nudge", "thanks_sms"),  # a suppressed SMS
    } <= steps
    assert ("ann", "nudge", "thanks_mail") not in steps  # ann's redemption converted her
    assert ("dan", "birthday", "gift") not in steps  # it ran before the copy
