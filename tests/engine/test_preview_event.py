"""Previews of event-triggered journeys: the event given, the audience, the conditions."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from cli import main
from loyalty.app import App
from tests.engine.helpers import journey_folder
from tests.engine.test_simulate import env
from tests.factories import make_member

BIG_ORDER = """
id: big_order
name: Big order thanks
status: draft
locales: [en]
trigger:
  type: event
  event: order.completed
  conditions: {field: event.total, gte: 100}
audience: {field: points_balance, gte: 10}
entry: {every_time: true}
steps:
  - {id: thanks, type: send_sms, template: big_order}
"""
TEMPLATES = {
    "en/big_order.sms": (
        "Thanks {{ member.first_name }} for order {{ event.order_id }} ({{ event.total }})! "
        "Reply STOP to opt out"
    ),
}
ORDER = {"order_id": "A1", "total": 150, "currency": "USD"}


def _preview(app: App, tmp_path: Path, member: str, *options: str) -> Result:
    folder = journey_folder(tmp_path, {"big_order": BIG_ORDER}, TEMPLATES)
    return CliRunner().invoke(
        main,
        ["journeys", "preview", "big_order", "--member", member, *options],
        env=env(app, folder),
    )


def test_preview_renders_with_the_given_events_data(app: App, tmp_path: Path) -> None:
    make_member(app, external_id="ann", first_name="Ann", points_balance=20)

    result = _preview(app, tmp_path, "ann", "--event", json.dumps(ORDER))

    assert result.exit_code == 0, result.output
    assert "Thanks Ann for order A1 (150)! Reply STOP to opt out" in result.output


def test_preview_takes_a_whole_event_of_the_triggers_type(app: App, tmp_path: Path) -> None:
    make_member(app, external_id="ann", first_name="Ann", points_balance=20)
    whole = {"type": "order.completed", "data": ORDER}

    result = _preview(app, tmp_path, "ann", "--event", json.dumps(whole), "--json")

    assert result.exit_code == 0, result.output
    [sms] = json.loads(result.stdout)
    assert sms["data"]["event"]["order_id"] == "A1"
    other = _preview(app, tmp_path, "ann", "--event", json.dumps({**whole, "type": "x.y"}))
    assert other.exit_code == 2
    assert other.stderr == "error: journey 'big_order' starts on order.completed events, not x.y\n"


def test_a_member_outside_the_audience_gets_one_line(app: App, tmp_path: Path) -> None:
    make_member(app, external_id="bob", first_name="Bob", points_balance=0)

    result = _preview(app, tmp_path, "bob", "--event", json.dumps(ORDER))

    assert result.exit_code == 1
    assert result.output == (
        "member bob is outside the audience of journey 'big_order'; nothing would be sent\n"
    )


def test_an_event_outside_the_triggers_conditions_gets_one_line(app: App, tmp_path: Path) -> None:
    make_member(app, external_id="ann", first_name="Ann", points_balance=20)

    result = _preview(app, tmp_path, "ann", "--event", json.dumps({**ORDER, "total": 40}))

    assert result.exit_code == 1
    assert result.output == (
        "this order.completed event does not meet the trigger's conditions of journey "
        "'big_order' for member ann; nothing would be sent\n"
    )


def test_an_event_that_is_not_a_json_object_is_one_line(app: App, tmp_path: Path) -> None:
    make_member(app, external_id="ann", points_balance=20)

    broken = _preview(app, tmp_path, "ann", "--event", "{order")
    listed = _preview(app, tmp_path, "ann", "--event", "[1]")

    assert broken.exit_code == 2 and broken.stderr.startswith("error: --event is not JSON (")
    assert listed.exit_code == 2 and listed.stderr.startswith(
        "error: --event must be a JSON object"
    )
