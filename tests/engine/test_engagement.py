"""Email engagement conditions: SendGrid opens and clicks steer branches and audiences."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from channels.webhooks import apply_sendgrid_events
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.event_types import EventInput
from loyalty.models import Member, Message
from tests.engine.helpers import enrollments, journey_folder, messages, published, send_event, tick
from tests.factories import make_member

PROMO = """
id: promo
name: Promo with a follow-up
status: active
trigger: {type: event, event: order.completed}
entry: {every_time: true}
steps:
  - {id: first, type: send_email, template: offer}
  - {id: pause, type: wait, duration: 2d}
  - id: opened_it
    type: branch
    if: {engaged: {event: opened, journey: promo, step: first, within: 3d}}
    then: thanks
    else: reminder
  - {id: thanks, type: send_email, template: offer, next: end}
  - {id: reminder, type: send_email, template: offer}
"""
# Audience: members who clicked any email of the promo in the last 30 days.
CLICKERS = """
id: clickers
name: Clickers only
status: active
trigger: {type: event, event: reward.redeemed}
audience: {engaged: {event: clicked, journey: promo, within: 30d}}
entry: {every_time: true}
steps:
  - {id: hello, type: send_email, template: offer}
"""
BODY = "---\nsubject: Offer\n---\n<p>{{ member.external_id }}</p>\n"


def order(member: str, order_id: str) -> EventInput:
    data = {"order_id": order_id, "total": "30", "currency": "EUR"}
    return EventInput("order.completed", member, id=f"o-{order_id}", data=data)


def sendgrid(app: App, message: Message, kind: str, event_id: str) -> None:
    """What the Event Webhook posts for one of our messages (custom arg `message_id`)."""
    event = {
        "event": kind,
        "sg_event_id": event_id,
        "message_id": str(message.id),
        "email": "x@example.com",
        "timestamp": int(app.clock.now().timestamp()),
    }
    with app.database.transaction() as session:
        apply_sendgrid_events(session, [event], now=app.clock.now())


def test_a_branch_follows_whether_the_member_opened_the_first_email(
    app: App, tmp_path: Path, clock: FrozenClock
) -> None:
    published(app, journey_folder(tmp_path, {"promo": PROMO}, {"en/offer.email": BODY}))
    for member in ("opener", "ignorer", "clicker"):
        make_member(app, external_id=member, email=f"{member}@example.com", email_consent=True)
        send_event(app, order(member, member))
    by_member = member_ids(app)
    first = {m.member_id: m for m in messages(app)}
    clock.advance(timedelta(hours=5))
    sendgrid(app, first[by_member["opener"]], "open", "sg-1")
    sendgrid(app, first[by_member["opener"]], "open", "sg-1")  # a retried delivery
    sendgrid(app, first[by_member["clicker"]], "click", "sg-2")  # a click counts as an open

    clock.advance(timedelta(days=2))
    tick(app)

    steps = {(m.member_id, m.step_id) for m in messages(app)}
    assert (by_member["opener"], "thanks") in steps
    assert (by_member["clicker"], "thanks") in steps
    assert (by_member["ignorer"], "reminder") in steps
    assert len(steps) == 6
    notes = {e.member_id: e.context["notes"]["opened_it"]["branch"] for e in enrollments(app)}
    assert notes == {by_member["opener"]: "then", by_member["clicker"]: "then"} | {
        by_member["ignorer"]: "else"
    }
    opened = {m.member_id: m for m in messages(app) if m.step_id == "first"}
    assert opened[by_member["clicker"]].last_clicked_at == clock.now() - timedelta(days=2)
    assert opened[by_member["clicker"]].last_opened_at == clock.now() - timedelta(days=2)
    assert opened[by_member["opener"]].last_clicked_at is None


def test_an_open_outside_the_window_does_not_count(
    app: App, tmp_path: Path, clock: FrozenClock
) -> None:
    slow = PROMO.replace("within: 3d", "within: 1d")
    published(app, journey_folder(tmp_path, {"promo": slow}, {"en/offer.email": BODY}))
    make_member(app, external_id="early", email="early@example.com", email_consent=True)
    send_event(app, order("early", "1"))
    [first] = messages(app)
    sendgrid(app, first, "open", "sg-early")  # opened at once: two days before the branch

    clock.advance(timedelta(days=2))
    tick(app)

    assert [m.step_id for m in messages(app)] == ["first", "reminder"]


def test_an_audience_of_members_who_clicked(app: App, tmp_path: Path) -> None:
    folder = journey_folder(
        tmp_path, {"promo": PROMO, "clickers": CLICKERS}, {"en/offer.email": BODY}
    )
    published(app, folder)
    for member in ("clicker", "opener"):
        make_member(app, external_id=member, email=f"{member}@example.com", email_consent=True)
        send_event(app, order(member, member))
    first = {m.member_id: m for m in messages(app)}
    by_member = member_ids(app)
    sendgrid(app, first[by_member["clicker"]], "click", "sg-c")
    sendgrid(app, first[by_member["opener"]], "open", "sg-o")

    for member in ("clicker", "opener"):
        redeemed = EventInput("reward.redeemed", member, id=f"r-{member}", data={"points": 10})
        send_event(app, redeemed)

    entered = {e.member_id for e in enrollments(app) if e.journey_id == "clickers"}
    assert entered == {by_member["clicker"]}


def member_ids(app: App) -> dict[str, int]:
    with app.database.sessions() as session:
        return {m.external_id: m.id for m in session.scalars(select(Member))}


def test_the_latest_open_is_kept_whatever_order_the_events_arrive_in(
    app: App, tmp_path: Path, clock: FrozenClock
) -> None:
    published(app, journey_folder(tmp_path, {"promo": PROMO}, {"en/offer.email": BODY}))
    make_member(app, external_id="ann", email="ann@example.com", email_consent=True)
    send_event(app, order("ann", "1"))
    [first] = messages(app)
    clock.advance(timedelta(hours=3))
    sendgrid(app, first, "open", "sg-late")
    clock.advance(timedelta(hours=-2))
    sendgrid(app, first, "open", "sg-early")  # an earlier open, delivered after the later one

    [first] = messages(app)
    assert first.last_opened_at == clock.now() + timedelta(hours=2)
    assert first.last_clicked_at is None
