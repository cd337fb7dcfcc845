"""What the law asks of marketing messages: opt-out wording, footer, unsubscribe that holds."""

from __future__ import annotations

import json
from pathlib import Path

from starlette.testclient import TestClient

from channels.delivery import deliver
from loyalty.app import App
from loyalty.event_types import EventInput
from tests.channels.support import another_message, due_messages, promo_version
from tests.engine.helpers import journey_folder, messages, published, send_event
from tests.factories import make_member
from web.app import create_app

JOURNEY = """
id: hello
name: Hello
status: active
trigger: {type: event, event: order.completed}
entry: {every_time: true}
steps:
  - {id: text, type: send_sms, template: hello}
"""


def test_the_first_marketing_sms_says_how_to_stop(app: App, tmp_path: Path) -> None:
    published(app, journey_folder(tmp_path, {"hello": JOURNEY}, {"en/hello.sms": "Hi!"}))
    app.settings = app.settings.model_copy(
        update={"sms_quiet_hours": "", "max_marketing_sms_per_day": 5}
    )
    make_member(app, external_id="m-1", phone="+14155550100", sms_consent=True)
    for n in (1, 2):
        send_event(
            app,
            EventInput(
                "order.completed",
                "m-1",
                id=f"o-{n}",
                data={"order_id": str(n), "total": 5, "currency": "USD"},
            ),
        )
    bodies = [
        json.loads(p.read_text())["body"] for p in sorted(app.settings.outbox_dir.rglob("*.json"))
    ]
    assert bodies == ["Hi! Reply STOP to opt out.", "Hi!"]


def test_marketing_email_carries_the_postal_address_and_unsubscribe_holds(
    app: App, tmp_path: Path
) -> None:
    app.settings = app.settings.model_copy(
        update={
            "postal_address": "Loyalty Club, ul. Długa 1, 00-001 Warszawa",
            "max_marketing_emails_per_week": 10,
        }
    )
    version = promo_version(app, tmp_path)
    [first] = due_messages(app, version, 1, "email")
    assert deliver(app, first) == "sent"
    eml = next(app.settings.outbox_dir.rglob("*.eml")).read_bytes().decode("utf-8", "replace")
    assert "00-001 Warszawa" in eml

    # The member clicks the one-click link: a POST without cookies.
    [message] = messages(app)
    client = TestClient(create_app(app))
    assert (
        client.post(
            f"/u/{message.unsubscribe_token}", data={"List-Unsubscribe": "One-Click"}
        ).status_code
        == 200
    )
    later = another_message(app, version, message.member_id, "email", "later")
    assert deliver(app, later) == "suppressed"
    assert messages(app)[-1].error == "no_consent"
