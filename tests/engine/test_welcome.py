"""The shipped welcome journey converts when the member orders (it waits for a real event type)."""

from __future__ import annotations

from pathlib import Path

from loyalty.app import App
from loyalty.event_types import EventInput
from tests.engine.helpers import enrollments, messages, published, send_event
from tests.factories import make_member

ROOT = Path(__file__).resolve().parents[2]


def test_an_order_within_the_window_converts_the_welcome_journey(app: App) -> None:
    # Given the shipped journeys, published, and a new member welcomed
    published(app, ROOT / "journeys")
    make_member(app, external_id="m-1", email="m1@example.com", email_consent=True, locale="pl")
    send_event(app, EventInput("member.enrolled", "m-1", id="enrolled-1"))
    [welcome] = [e for e in enrollments(app) if e.journey_id == "welcome"]
    assert welcome.state == "waiting"
    [email] = messages(app)
    assert (email.state, email.locale) == ("sent", "pl")
    # The shared footer is a partial, rendered from the published version.
    eml = next(app.settings.outbox_dir.rglob("*.eml")).read_bytes()
    assert b"programu lojalno" in eml

    # When the member's first order arrives through the events path
    order = {"order_id": "1001", "total": "42.50", "currency": "EUR"}
    send_event(app, EventInput("order.completed", "m-1", id="order-1001", data=order))

    # Then the goal is met: the enrollment converted
    [welcome] = [e for e in enrollments(app) if e.journey_id == "welcome"]
    assert (welcome.state, welcome.exit_reason) == ("converted", "goal")
    assert welcome.converted_at is not None
