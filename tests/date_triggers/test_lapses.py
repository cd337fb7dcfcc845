"""Inactivity: a `last_order_at` trigger enters `days_after` the last order, once per lapse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from automations.definition.models import DateTrigger
from automations.runtime.ticks import enter_date_journeys
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.event_types import EventInput
from tests.engine.helpers import enrollments, journey_folder, published, send_event, workers
from tests.factories import make_member

WIN_BACK = """
id: win_back
name: We miss you
status: active
trigger: {type: date, field: last_order_at, days_after: 30, at: "09:00"}
entry: {every_time: true}
steps:
  - id: hello
    type: send_email
    template: miss_you
"""
TEMPLATES = {"en/miss_you.email": "---\nsubject: We miss you\n---\n<p>Come back</p>\n"}


def order(order_id: str) -> EventInput:
    data = {"order_id": order_id, "total": "30", "currency": "EUR"}
    return EventInput("order.completed", "m-1", id=f"e-{order_id}", data=data)


def scan(app: App) -> int:
    with workers(app):
        return enter_date_journeys(app)


def test_a_lapse_enters_once_and_a_new_order_starts_a_new_one(
    app: App, clock: FrozenClock, tmp_path: Path
) -> None:
    # Given a win-back journey 30 days after the last order, and a member who ordered
    published(app, journey_folder(tmp_path, {"win_back": WIN_BACK}, TEMPLATES))
    make_member(app, external_id="m-1", email="a@example.com", email_consent=True, time_zone="UTC")
    ordered_at = clock.now()
    send_event(app, order("1"))

    # When 29 days pass, nothing; on day 30 at 09:00 the member enters, once
    clock.set(datetime.combine(ordered_at.date() + timedelta(days=29), datetime.min.time(), UTC))
    clock.advance(timedelta(hours=9))
    assert scan(app) == 0
    clock.advance(timedelta(days=1))
    assert scan(app) == 1
    assert scan(app) == 0
    assert [e.occurrence for e in enrollments(app)] == [ordered_at.isoformat()]

    # When the member orders again, the next lapse counts from that order
    second = clock.now()
    send_event(app, order("2"))
    clock.advance(timedelta(days=30))
    assert scan(app) == 1
    assert scan(app) == 0
    assert [e.occurrence for e in enrollments(app)] == [
        ordered_at.isoformat(),
        second.isoformat(),
    ]


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"field": "last_order_at"}, "needs `days_after`"),
        ({"field": "last_order_at", "days_after": 30, "days_before": 3}, "not days_before"),
        ({"field": "birthday", "days_after": 3}, "birthday counts `days_before`"),
    ],
)
def test_days_after_belongs_to_last_order_at(fields: dict[str, object], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        DateTrigger.model_validate({"type": "date", **fields})
