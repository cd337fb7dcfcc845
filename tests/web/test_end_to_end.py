"""The sandbox emulators post real signed webhooks to a served app: the whole loop."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sendgrid import SendGridAPIClient
from starlette.applications import Starlette
from twilio.rest import Client

from channels.delivery import deliver
from loyalty.app import App
from loyalty.clock import SystemClock
from loyalty.db import Database
from loyalty.models import Member, Message
from sandbox.sendgrid import SendGridSandbox
from sandbox.server import ServerThread
from sandbox.twilio import TwilioSandbox
from tests.channels.support import due_messages, promo_version
from tests.conftest import make_settings
from tests.factories import make_member
from tests.web.support import load, make_message
from web.app import create_app

OUR_NUMBER = "+15005550006"
PHONE = "+48600100200"


@pytest.fixture
def served(database: Database, tmp_path: Path) -> Iterator[tuple[Starlette, str]]:
    """The web app on a loopback port; tests put an App with matching settings in its state."""
    web = create_app(App(make_settings(database), database, SystemClock()))
    server = ServerThread(web, name="loyalty-web-test")
    port = server.start()
    try:
        yield web, f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def configure(web: Starlette, database: Database, base_url: str, **settings: Any) -> App:
    app = App(
        make_settings(database, public_base_url=base_url, **settings), database, SystemClock()
    )
    web.state.loyalty = app
    return app


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_sendgrid_events_reconcile_and_update_a_sent_email(
    served: tuple[Starlette, str], database: Database, sendgrid_sandbox: SendGridSandbox
) -> None:
    web, base_url = served
    app = configure(
        web, database, base_url, sendgrid_webhook_public_key=sendgrid_sandbox.public_key
    )
    sendgrid_sandbox.webhook_url = f"{base_url}/webhooks/sendgrid"
    member = make_member(app, email="ada+spam@example.com", email_consent=True)
    message = make_message(app, member, state="unknown", sent_at=None)

    client = SendGridAPIClient(sendgrid_sandbox.api_key, host=sendgrid_sandbox.base_url)
    response = client.client.mail.send.post(
        request_body={
            "personalizations": [
                {
                    "to": [{"email": "ada+spam@example.com"}],
                    "custom_args": {"message_id": str(message.id)},
                }
            ],
            "from": {"email": "club@example.com"},
            "subject": "Your points",
            "content": [{"type": "text/plain", "value": "Hello"}],
        }
    )
    x_message_id = response.headers["X-Message-Id"]

    eventually(lambda: load(app, Member, member.id).email_consent is False)
    assert sendgrid_sandbox.wait_idle(5)
    assert {d.status for d in sendgrid_sandbox.webhook_deliveries()} == {200}
    row = load(app, Message, message.id)
    assert (row.state, row.provider_id, row.provider_status) == (
        "sent",
        x_message_id,
        "spam_reported",
    )


def test_twilio_callbacks_and_a_stop_reply(
    served: tuple[Starlette, str], database: Database, twilio_sandbox: TwilioSandbox
) -> None:
    web, base_url = served
    app = configure(web, database, base_url, twilio_auth_token=twilio_sandbox.auth_token)
    twilio_sandbox.inbound_url = f"{base_url}/webhooks/twilio/inbound"
    member = make_member(app, phone=PHONE, sms_consent=True)
    message = make_message(app, member, channel="sms", state="unknown", sent_at=None)

    client = Client(twilio_sandbox.account_sid, twilio_sandbox.auth_token)
    client.api.base_url = twilio_sandbox.base_url
    sent = client.messages.create(
        to=PHONE,
        from_=OUR_NUMBER,
        body="Your points are waiting",
        status_callback=f"{base_url}/webhooks/twilio/status?message_id={message.id}",
    )
    eventually(lambda: load(app, Message, message.id).provider_status == "delivered")
    row = load(app, Message, message.id)
    assert (row.state, row.provider_id) == ("sent", sent.sid)

    twilio_sandbox.send_inbound(PHONE, OUR_NUMBER, "stop")
    eventually(lambda: load(app, Member, member.id).sms_consent is False)
    assert twilio_sandbox.wait_idle(5)
    assert {d.status for d in twilio_sandbox.callbacks()} == {200}


def test_a_status_callback_that_overtakes_the_answer_settles_the_sms_as_sent(
    served: tuple[Starlette, str],
    database: Database,
    twilio_sandbox: TwilioSandbox,
    tmp_path: Path,
) -> None:
    # Given Twilio accepts the SMS and calls back at once, but its answer to us is lost
    web, base_url = served
    app = configure(
        web,
        database,
        base_url,
        twilio_account_sid=twilio_sandbox.account_sid,
        twilio_auth_token=twilio_sandbox.auth_token,
        twilio_base_url=twilio_sandbox.base_url,
        twilio_from=OUR_NUMBER,
        twilio_messages_per_second=1000,
        sms_quiet_hours="",
        provider_timeout_seconds=1.0,
        outbox_dir=tmp_path / "outbox",
    )
    [message_id] = due_messages(app, promo_version(app, tmp_path), 1, "sms")
    twilio_sandbox.set_faults(drop_rate=1.0, drop_hold_s=3.0)

    # When the worker delivers it (the callback lands while the row is still claimed)
    state = deliver(app, message_id)

    # Then the provider's word wins over the lost answer: sent, not unknown, sent once
    assert state == "sent"
    row = load(app, Message, message_id)
    assert (row.state, row.error) == ("sent", None)
    assert row.provider_id is not None and row.provider_id.startswith("SM")
    posts = twilio_sandbox.requests(method="POST")
    assert len([r for r in posts if r.path.endswith("/Messages.json")]) == 1


def test_a_callback_settles_an_sms_whose_worker_died_after_the_request_left(
    served: tuple[Starlette, str], database: Database, twilio_sandbox: TwilioSandbox
) -> None:
    # Given an SMS whose worker was killed after its request left (the row says claimed)
    web, base_url = served
    app = configure(web, database, base_url, twilio_auth_token=twilio_sandbox.auth_token)
    member = make_member(app, phone=PHONE, sms_consent=True)
    message = make_message(app, member, channel="sms", state="claimed", sent_at=None)
    with app.database.transaction() as session:
        row = session.get(Message, message.id)
        assert row is not None
        row.request_at = app.clock.now()

    # When Twilio, which took the request, calls back
    client = Client(twilio_sandbox.account_sid, twilio_sandbox.auth_token)
    client.api.base_url = twilio_sandbox.base_url
    sent = client.messages.create(
        to=PHONE,
        from_=OUR_NUMBER,
        body="Your points are waiting",
        status_callback=f"{base_url}/webhooks/twilio/status?message_id={message.id}",
    )

    # Then the message is sent at once, without waiting for the claim to time out
    eventually(lambda: load(app, Message, message.id).state == "sent")
    assert load(app, Message, message.id).provider_id == sent.sid
