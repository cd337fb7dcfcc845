"""Email through the official SendGrid client to the emulator: batches, 429s, lost answers."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from channels.delivery import settle_stale
from channels.email_batches import flush_emails
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.event_types import EventInput
from loyalty.models import Message
from sandbox.sendgrid import SendGridSandbox
from tests.channels.support import due_messages, promo_version, states
from tests.engine.helpers import journey_folder, published, send_event
from tests.factories import make_member


def accepted(sandbox: SendGridSandbox) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in sandbox.requests(path="/v3/mail/send", status=202)]


def test_2500_due_emails_with_one_template_leave_in_three_requests(
    mail_app: App, sendgrid_sandbox: SendGridSandbox, tmp_path: Path
) -> None:
    ids = due_messages(mail_app, promo_version(mail_app, tmp_path), 2500, "email")
    assert flush_emails(mail_app) == 2500
    bodies = accepted(sendgrid_sandbox)
    assert [len(b["personalizations"]) for b in bodies] == [1000, 1000, 500]
    sent_ids = [int(p["custom_args"]["message_id"]) for b in bodies for p in b["personalizations"]]
    assert sorted(sent_ids) == ids
    first = bodies[0]["personalizations"][0]
    assert first["subject"] == "Hello Ann"
    assert first["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "<p>Your balance: 0</p>" in first["substitutions"]["%loyalty_html%"]
    assert states(mail_app) == {"sent": 2500}
    with mail_app.database.sessions() as session:
        assert None not in session.scalars(select(Message.provider_id)).all()


def test_a_429_storm_is_survived_with_nothing_lost_or_doubled(
    mail_app: App, sendgrid_sandbox: SendGridSandbox, tmp_path: Path, clock: FrozenClock
) -> None:
    due_messages(mail_app, promo_version(mail_app, tmp_path), 1500, "email")
    # One request per 5 s of the test's clock: the second batch of each flush meets a 429.
    sendgrid_sandbox.faults.clock = lambda: clock.now().timestamp()
    sendgrid_sandbox.set_faults(rate_limit=1, rate_window_s=5.0)
    for _ in range(10):
        flush_emails(mail_app)
        if states(mail_app) == {"sent": 1500}:
            break
        clock.advance(timedelta(minutes=1))  # past each Retry-After and the emulator's window
    assert states(mail_app) == {"sent": 1500}
    assert sendgrid_sandbox.requests(path="/v3/mail/send", status=429)
    sent = [
        p["custom_args"]["message_id"]
        for b in accepted(sendgrid_sandbox)
        for p in b["personalizations"]
    ]
    assert len(sent) == len(set(sent)) == 1500


def test_a_lost_answer_makes_the_message_unknown_and_it_is_never_resent(
    mail_app: App, sendgrid_sandbox: SendGridSandbox, tmp_path: Path, clock: FrozenClock
) -> None:
    due_messages(mail_app, promo_version(mail_app, tmp_path), 3, "email")
    sendgrid_sandbox.set_faults(drop_rate=1.0, drop_hold_s=2.0)
    flush_emails(mail_app)
    assert states(mail_app) == {"unknown": 3}
    sendgrid_sandbox.set_faults(drop_rate=0.0)
    for _ in range(3):
        clock.advance(timedelta(hours=1))
        flush_emails(mail_app)
        settle_stale(mail_app)
    assert len(sendgrid_sandbox.requests(path="/v3/mail/send")) == 1
    clock.advance(timedelta(hours=mail_app.settings.unknown_expiry_hours))
    settle_stale(mail_app)
    assert states(mail_app) == {"failed": 3}
    with mail_app.database.sessions() as session:
        assert all("unknown_expired" in (e or "") for e in session.scalars(select(Message.error)))


def test_a_bad_request_fails_with_the_providers_reason(
    mail_app: App, sendgrid_sandbox: SendGridSandbox, tmp_path: Path
) -> None:
    mail_app.settings = mail_app.settings.model_copy(update={"sendgrid_api_key": "SG.wrong"})
    due_messages(mail_app, promo_version(mail_app, tmp_path), 2, "email")
    flush_emails(mail_app)
    assert states(mail_app) == {"failed": 2}
    with mail_app.database.sessions() as session:
        assert all((e or "").startswith("HTTP 401") for e in session.scalars(select(Message.error)))


def test_a_dynamic_template_step_sends_the_template_id_and_our_data(
    mail_app: App, sendgrid_sandbox: SendGridSandbox, tmp_path: Path
) -> None:
    journey = """
id: dyn
name: Dynamic
status: active
trigger: {type: event, event: member.enrolled}
entry: {once: true}
steps:
  - id: mail
    type: send_email
    template_id: {en: d-0123456789abcdef0123456789abcdef, pl: d-fedcba9876543210fedcba9876543210}
"""
    published(mail_app, journey_folder(tmp_path, {"dyn": journey}, {}))
    make_member(
        mail_app,
        external_id="m-1",
        first_name="Zofia",
        locale="pl-PL",
        email="z@example.com",
        email_consent=True,
    )
    send_event(mail_app, EventInput("member.enrolled", "m-1", id="1"))
    [body] = accepted(sendgrid_sandbox)
    assert body["template_id"] == "d-fedcba9876543210fedcba9876543210"
    data = body["personalizations"][0]["dynamic_template_data"]
    assert data["member"]["first_name"] == "Zofia"
    assert data["unsubscribe_url"].startswith("http://127.0.0.1:8000/u/")
    assert states(mail_app) == {"sent": 1}
