"""SendGrid emulator, driven through the sendgrid client; events checked with its verifier."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from python_http_client.exceptions import (
    BadRequestsError,
    PayloadTooLargeError,
    TooManyRequestsError,
    UnauthorizedError,
)
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.mail import Asm, Category, CustomArg, Mail

from sandbox.sendgrid import SendGridSandbox
from sandbox.sink import WebhookSink
from tests.sandbox.clients import sendgrid_client


def mail_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "personalizations": [{"to": [{"email": "ann@example.com"}], "subject": "Your points"}],
        "from": {"email": "club@example.com", "name": "Club"},
        "content": [{"type": "text/html", "value": "<p>You have 120 points</p>"}],
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def test_send_is_202_with_a_message_id(sendgrid_sandbox: SendGridSandbox) -> None:
    client = sendgrid_client(sendgrid_sandbox)
    mail = Mail(
        from_email="club@example.com",
        to_emails="ann@example.com",
        subject="Your points",
        html_content="<p>120 points</p>",
    )

    response = client.send(mail)

    assert response.status_code == 202
    assert response.body == b""
    message_id = response.headers["X-Message-Id"]
    assert len(message_id) == 22
    (recorded,) = sendgrid_sandbox.requests(path="/v3/mail/send")
    assert recorded.headers["authorization"] == f"Bearer {sendgrid_sandbox.api_key}"
    assert recorded.json()["personalizations"][0]["to"] == [{"email": "ann@example.com"}]
    assert sendgrid_sandbox.sent[0].message_id == message_id


def test_template_send_needs_no_subject_or_content(sendgrid_sandbox: SendGridSandbox) -> None:
    client = sendgrid_client(sendgrid_sandbox)
    body = mail_body(content=None, template_id="d-0123456789abcdef0123456789abcdef")
    body["personalizations"] = [
        {"to": [{"email": f"m{i}@example.com"}], "dynamic_template_data": {"points": i}}
        for i in range(1000)
    ]

    response = client.client.mail.send.post(request_body=body)

    assert response.status_code == 202


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (mail_body(personalizations=None), "personalizations"),
        (mail_body(**{"from": None}), "from.email"),
        (mail_body(**{"from": {"email": "club"}}), "from.email"),
        (mail_body(personalizations=[{"subject": "x"}]), "personalizations.0.to"),
        (
            mail_body(personalizations=[{"to": [{"email": "nope"}], "subject": "x"}]),
            "personalizations.0.to.0.email",
        ),
        (mail_body(personalizations=[{"to": [{"email": "a@example.com"}]}]), "subject"),
        (mail_body(content=None), "content"),
        (mail_body(categories=[f"c{i}" for i in range(11)]), "categories"),
        (mail_body(asm={"group_id": "12"}), "asm.group_id"),
        (mail_body(send_at=int(time.time()) + 73 * 3600), "send_at"),
        (
            mail_body(
                personalizations=[
                    {"to": [{"email": f"m{i}@example.com"}], "subject": "x"} for i in range(1001)
                ]
            ),
            "personalizations",
        ),
        (
            mail_body(
                personalizations=[
                    {"to": [{"email": f"m{i}@example.com"} for i in range(1001)], "subject": "x"}
                ]
            ),
            "personalizations",
        ),
        (
            mail_body(
                personalizations=[
                    {
                        "to": [{"email": "a@example.com"}],
                        "cc": [{"email": "A@example.com"}],
                        "subject": "x",
                    }
                ]
            ),
            "personalizations.0",
        ),
    ],
)
def test_invalid_bodies_are_400_with_the_field(
    sendgrid_sandbox: SendGridSandbox, body: dict[str, Any], field: str
) -> None:
    client = sendgrid_client(sendgrid_sandbox)

    with pytest.raises(BadRequestsError) as caught:
        client.client.mail.send.post(request_body=body)

    errors = json.loads(caught.value.body)["errors"]
    assert field in [e["field"] for e in errors]
    assert all(set(e) == {"message", "field", "help"} for e in errors)
    assert sendgrid_sandbox.sent == []


def test_wrong_api_key_is_401(sendgrid_sandbox: SendGridSandbox) -> None:
    client = sendgrid_client(sendgrid_sandbox, api_key="SG.wrong")

    with pytest.raises(UnauthorizedError) as caught:
        client.client.mail.send.post(request_body=mail_body())

    assert json.loads(caught.value.body)["errors"][0]["field"] is None


def test_sandbox_mode_is_200_without_events(
    sendgrid_sandbox: SendGridSandbox, webhook_sink: WebhookSink
) -> None:
    sendgrid_sandbox.webhook_url = webhook_sink.url("/sendgrid/events")
    client = sendgrid_client(sendgrid_sandbox)

    response = client.client.mail.send.post(
        request_body=mail_body(mail_settings={"sandbox_mode": {"enable": True}})
    )

    assert response.status_code == 200
    assert sendgrid_sandbox.wait_idle()
    assert webhook_sink.requests() == []


def test_rate_limit_is_429_with_headers(sendgrid_sandbox: SendGridSandbox) -> None:
    sendgrid_sandbox.set_faults(rate_limit=1, rate_window_s=60)
    client = sendgrid_client(sendgrid_sandbox)
    client.client.mail.send.post(request_body=mail_body())

    with pytest.raises(TooManyRequestsError) as caught:
        client.client.mail.send.post(request_body=mail_body())

    assert json.loads(caught.value.body) == {
        "errors": [{"field": None, "message": "too many requests"}]
    }
    assert caught.value.headers["X-RateLimit-Limit"] == "1"
    assert caught.value.headers["X-RateLimit-Remaining"] == "0"
    assert int(caught.value.headers["X-RateLimit-Reset"]) > time.time()


def test_event_webhook_posts_signed_events_for_every_outcome(
    sendgrid_sandbox: SendGridSandbox, webhook_sink: WebhookSink
) -> None:
    sendgrid_sandbox.webhook_url = webhook_sink.url("/sendgrid/events")
    client = sendgrid_client(sendgrid_sandbox)
    mail = Mail(
        from_email="club@example.com",
        to_emails=[
            "ann+click@example.com",
            "bob+bounce@example.com",
            "cy+spam@example.com",
            "di+unsubscribe@example.com",
            "ed+groupunsub@example.com",
        ],
        subject="Your points",
        html_content="<p>120 points</p>",
        is_multiple=True,
    )
    mail.category = Category("points")
    mail.asm = Asm(42)
    mail.custom_arg = CustomArg("member_id", "m-1")

    response = client.send(mail)
    assert sendgrid_sandbox.wait_idle()

    message_id = response.headers["X-Message-Id"]
    verifier = EventWebhook(sendgrid_sandbox.public_key)
    events = []
    for post in webhook_sink.requests(path="/sendgrid/events"):
        signature = post.headers["x-twilio-email-event-webhook-signature"]
        timestamp = post.headers["x-twilio-email-event-webhook-timestamp"]
        assert verifier.verify_signature(post.text, signature, timestamp)
        events += post.json()
    kinds = {e["event"] for e in events}
    assert kinds >= {
        "processed",
        "delivered",
        "open",
        "click",
        "bounce",
        "spamreport",
        "unsubscribe",
        "group_unsubscribe",
    }
    assert all(e["sg_message_id"].startswith(message_id + ".") for e in events)
    assert all(e["member_id"] == "m-1" and e["asm_group_id"] == 42 for e in events)
    assert all(e["category"] == "points" for e in events)
    bounce = next(e for e in events if e["event"] == "bounce")
    assert bounce["email"] == "bob+bounce@example.com"
    assert bounce["type"] == "bounce"
    assert next(e for e in events if e["event"] == "click")["url"].startswith("https://")


def test_tampered_batches_fail_verification(
    sendgrid_sandbox: SendGridSandbox, webhook_sink: WebhookSink
) -> None:
    sendgrid_sandbox.webhook_url = webhook_sink.url("/events")
    sendgrid_client(sendgrid_sandbox).client.mail.send.post(request_body=mail_body())
    assert sendgrid_sandbox.wait_idle()
    (post,) = webhook_sink.requests()
    signature = post.headers["x-twilio-email-event-webhook-signature"]
    timestamp = post.headers["x-twilio-email-event-webhook-timestamp"]

    tampered = post.text.replace("ann@example.com", "eve@example.com")

    assert not EventWebhook(sendgrid_sandbox.public_key).verify_signature(
        tampered, signature, timestamp
    )


def test_duplicates_repeat_the_same_sg_event_id(
    sendgrid_sandbox: SendGridSandbox, webhook_sink: WebhookSink
) -> None:
    sendgrid_sandbox.webhook_url = webhook_sink.url("/events")
    sendgrid_sandbox.duplicate_rate = 1.0
    client = sendgrid_client(sendgrid_sandbox)

    client.client.mail.send.post(request_body=mail_body())
    assert sendgrid_sandbox.wait_idle()

    ids = [e["sg_event_id"] for e in sendgrid_sandbox.posted_events()]
    assert len(ids) == 4
    assert len(set(ids)) == 2
    assert len(webhook_sink.requests()) == 2


def test_custom_events_can_be_emitted(
    sendgrid_sandbox: SendGridSandbox, webhook_sink: WebhookSink
) -> None:
    sendgrid_sandbox.webhook_url = webhook_sink.url("/events")

    sendgrid_sandbox.emit_events([{"event": "group_resubscribe", "email": "ann@example.com"}])
    assert sendgrid_sandbox.wait_idle()

    (event,) = webhook_sink.requests()[0].json()
    assert event["event"] == "group_resubscribe"
    assert event["sg_event_id"]


def test_bodies_over_30_mb_are_413(sendgrid_sandbox: SendGridSandbox) -> None:
    client = sendgrid_client(sendgrid_sandbox)
    body = mail_body(content=[{"type": "text/plain", "value": "x" * (30 * 1024 * 1024)}])

    with pytest.raises(PayloadTooLargeError):
        client.client.mail.send.post(request_body=body)
