"""points.changed and tier.changed: emitted by the ledger once per change, on every path."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import select

from automations.intake import store_batch
from automations.runtime import actors
from cli import main
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.event_types import EventInput
from loyalty.events import Recorded, handle_event
from loyalty.models import Enrollment, Event
from tests.engine.helpers import enrollments, journey_folder, published, send_event, workers
from tests.factories import make_member

PROMOTED = """
id: promoted
name: Welcome to a higher tier
status: active
trigger:
  type: event
  event: tier.changed
  conditions: {field: event.direction, eq: up}
entry: {every_time: true}
steps:
  - id: hello
    type: send_email
    template: promoted
"""
SPENT = """
id: spent
name: Points went down
status: active
trigger:
  type: event
  event: points.changed
  conditions: {field: event.delta, lt: 0}
entry: {every_time: true}
steps:
  - id: hello
    type: send_email
    template: promoted
"""
THANKS = """
id: thanks
name: Thanks for every order
status: active
trigger:
  type: event
  event: order.completed
entry: {every_time: true}
steps:
  - id: bonus
    type: award_points
    amount: 10
    reason: Thank-you bonus
"""
TEMPLATES = {"en/promoted.email": "---\nsubject: Hi\n---\n<p>Hi</p>\n"}


def given_journeys(app: App, tmp_path: Path, **journeys: str) -> Path:
    folder = journey_folder(tmp_path, journeys, TEMPLATES)
    published(app, folder)
    return folder


def order(member: str, order_id: str, total: str, event_id: str | None = None) -> EventInput:
    data = {"order_id": order_id, "total": total, "currency": "EUR"}
    return EventInput("order.completed", member, id=event_id or f"e-{order_id}", data=data)


def refund(member: str, order_id: str, refund_id: str, event_id: str) -> EventInput:
    data = {"order_id": order_id, "refund_id": refund_id}
    return EventInput("order.refunded", member, id=event_id, data=data)


def changes(app: App, event_type: str) -> list[dict[str, Any]]:
    """The payloads of the program's change events of one type, all processed."""
    with app.database.sessions() as session:
        rows = session.scalars(select(Event).where(Event.type == event_type).order_by(Event.id))
        found = list(rows)
    assert all(e.processed_at is not None and e.source == "loyalty" for e in found)
    return [e.payload for e in found]


def entered(app: App, journey_id: str) -> list[str]:
    return [e.occurrence for e in enrollments(app) if e.journey_id == journey_id]


def test_an_order_that_lifts_the_tier_emits_both_changes_once(app: App, tmp_path: Path) -> None:
    # Given a journey for members who move up a tier
    given_journeys(app, tmp_path, promoted=PROMOTED)
    make_member(app, external_id="m-1", email="a@example.com", email_consent=True)

    # When an order earns enough for silver, and arrives again (same id, then another id)
    send_event(app, order("m-1", "1", "1200"))
    send_event(app, order("m-1", "1", "1200"))
    send_event(app, order("m-1", "1", "1200", event_id="import-1"))
    with workers(app):
        actors.send("process_event", 1)

    # Then one points.changed and one tier.changed are recorded and processed
    assert changes(app, "points.changed") == [
        {"delta": 1200, "balance": 1200, "kind": "earn", "reason": "order 1"}
    ]
    assert changes(app, "tier.changed") == [{"from": "bronze", "to": "silver", "direction": "up"}]
    # and the journey on tier.changed is entered once
    with app.database.sessions() as session:
        tier_event = session.scalar(select(Event.id).where(Event.type == "tier.changed"))
    assert entered(app, "promoted") == [f"event:{tier_event}"]


def test_a_refund_takes_points_and_the_tier_back_down(app: App, tmp_path: Path) -> None:
    given_journeys(app, tmp_path, promoted=PROMOTED, spent=SPENT)
    make_member(app, external_id="m-1", email="a@example.com", email_consent=True)
    send_event(app, order("m-1", "1", "1200"))

    send_event(app, refund("m-1", "1", "r-1", "refund-1"))

    assert changes(app, "points.changed")[1] == {
        "delta": -1200,
        "balance": 0,
        "kind": "adjust",
        "reason": "refund of order 1",
    }
    assert changes(app, "tier.changed")[1] == {
        "from": "silver",
        "to": "bronze",
        "direction": "down",
    }
    assert len(entered(app, "promoted")) == 1  # the way down is not a promotion
    assert len(entered(app, "spent")) == 1


def test_a_journey_award_and_expiry_emit_points_changed(
    app: App, clock: FrozenClock, tmp_path: Path
) -> None:
    # Given a journey that awards a bonus on every order
    given_journeys(app, tmp_path, thanks=THANKS, spent=SPENT)
    member = make_member(app, external_id="m-1", email="a@example.com", email_consent=True)

    # When an order arrives
    send_event(app, order("m-1", "1", "30"))

    # Then the earn and the journey's bonus each emit points.changed
    earned, bonus = changes(app, "points.changed")
    assert (earned["kind"], earned["delta"], earned["balance"]) == ("earn", 30, 30)
    assert bonus == {"delta": 10, "balance": 40, "kind": "bonus", "reason": "Thank-you bonus"}

    # When the earned points expire and the expiry actor runs (twice)
    clock.advance(timedelta(days=app.settings.points_expiry_days + 1))
    with workers(app):
        actors.send("expire_points", member.id)
        actors.send("expire_points", member.id)

    # Then one change per expired lot is emitted, once, and routed
    expired = changes(app, "points.changed")[2:]
    assert sorted((e["kind"], e["delta"]) for e in expired) == [("expire", -30), ("expire", -10)]
    assert len(entered(app, "spent")) == 2


def test_a_points_adjustment_by_hand_emits_points_changed(app: App, tmp_path: Path) -> None:
    folder = given_journeys(app, tmp_path, promoted=PROMOTED)
    make_member(app, external_id="m-1", email="a@example.com", email_consent=True)
    env = {
        "DATABASE_URL": app.database.url,
        "JOURNEYS_DIR": str(folder),
        "OUTBOX_DIR": str(tmp_path / "outbox"),
    }

    for _ in range(2):
        done = CliRunner().invoke(
            main,
            ["points", "adjust", "m-1", "5000", "--reason", "goodwill", "--key", "k-1"],
            env=env,
        )
        assert done.exit_code == 0, done.output

    assert changes(app, "points.changed") == [
        {"delta": 5000, "balance": 5000, "kind": "adjust", "reason": "goodwill"}
    ]
    assert changes(app, "tier.changed") == [{"from": "bronze", "to": "gold", "direction": "up"}]
    assert len(entered(app, "promoted")) == 1


def test_an_order_under_two_event_ids_enters_an_every_time_journey_once(
    app: App, tmp_path: Path
) -> None:
    # Given an every_time journey on orders
    given_journeys(app, tmp_path, thanks=THANKS)
    make_member(app, external_id="m-1")

    # When one order arrives as a webhook and again from an import, then another order
    send_event(app, order("m-1", "1001", "30", event_id="webhook-1"))
    send_event(app, order("m-1", "1001", "30", event_id="import-1"))
    send_event(app, order("m-1", "1002", "30", event_id="webhook-2"))

    # Then each order enters the journey once
    assert entered(app, "thanks") == ["order:1001", "order:1002"]
    with app.database.sessions() as session:
        bonus = session.scalars(
            select(Enrollment.state).where(Enrollment.journey_id == "thanks")
        ).all()
    assert list(bonus) == ["completed", "completed"]


def test_a_refund_under_two_event_ids_enters_once_and_another_refund_again(
    app: App, tmp_path: Path
) -> None:
    on_refund = SPENT.replace("id: spent", "id: refunded").replace(
        "event: points.changed\n  conditions: {field: event.delta, lt: 0}", "event: order.refunded"
    )
    given_journeys(app, tmp_path, refunded=on_refund)
    make_member(app, external_id="m-1", email="a@example.com", email_consent=True)
    send_event(app, order("m-1", "1", "100"))

    send_event(app, refund("m-1", "1", "r-1", "refund-1"))
    send_event(app, refund("m-1", "1", "r-1", "refund-1-again"))
    send_event(app, refund("m-1", "1", "r-2", "refund-2"))

    assert entered(app, "refunded") == ["refund:1:r-1", "refund:1:r-2"]


def test_a_change_no_journey_hears_is_stored_processed_and_a_heard_one_waits_for_routing(
    app: App, tmp_path: Path
) -> None:
    # Given a journey on tier.changed, and none on points.changed
    given_journeys(app, tmp_path, promoted=PROMOTED)
    make_member(app, external_id="m-1", email="a@example.com", email_consent=True)
    (stored,) = store_batch(app, [order("m-1", "1", "1200")])
    assert isinstance(stored, Recorded)

    # When the order is processed, with no worker to take what it caused
    caused, _ = handle_event(
        app.database, stored.row.id, settings=app.settings, now=app.clock.now()
    )

    # Then points.changed is stored already processed and handed to nobody,
    # while tier.changed is handed on, still to be routed into the journey
    with app.database.sessions() as session:
        rows = {e.type: e for e in session.scalars(select(Event).where(Event.source == "loyalty"))}
    assert rows["points.changed"].processed_at == app.clock.now()
    assert rows["tier.changed"].processed_at is None
    assert caused == [rows["tier.changed"].id]
