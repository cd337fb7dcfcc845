"""SendGrid Event Webhook: verified, deduplicated, applied to messages, suppressions, consent."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.testclient import TestClient

from loyalty.app import App
from loyalty.models import Member, Message
from tests.factories import make_member
from tests.web.support import (
    consents,
    load,
    make_message,
    post_sendgrid,
    provider_events,
    sendgrid_event,
    sendgrid_headers,
    snapshot,
    suppressions,
)


@pytest.fixture
def member(web_app: App) -> Member:
    return make_member(web_app, email="ada@example.com", email_consent=True)


@pytest.fixture
def message(web_app: App, member: Member) -> Message:
    return make_message(web_app, member, provider_id="x-message-1")


def test_delivered_then_opened_then_clicked(
    client: TestClient, web_app: App, sendgrid_key: ec.EllipticCurvePrivateKey, message: Message
) -> None:
    events = [
        sendgrid_event(message, "processed", timestamp=1773144001),
        sendgrid_event(message, "delivered", timestamp=1773144002),
        sendgrid_event(message, "open", timestamp=1773144003),
    ]
    response = post_sendgrid(client, sendgrid_key, events, web_app.clock.now())
    assert response.status_code == 200
    row = load(web_app, Message, message.id)
    assert row.provider_status == "opened"
    assert int(row.provider_status_at.timestamp()) == 1773144003

    post_sendgrid(client, sendgrid_key, [sendgrid_event(message, "click")], web_app.clock.now())
    assert load(web_app, Message, message.id).provider_status == "clicked"
    stored = provider_events(web_app, "sendgrid")
    assert [e.kind for e in stored] == ["processed", "delivered", "open", "click"]
    assert all(e.applied_at == web_app.clock.now() for e in stored)


def test_late_events_never_downgrade_the_status(
    client: TestClient, web_app: App, sendgrid_key: ec.EllipticCurvePrivateKey, message: Message
) -> None:
    events = [
        sendgrid_event(message, "open", timestamp=1773144010),
        sendgrid_event(message, "delivered", timestamp=1773144005),
        sendgrid_event(message, "processed", timestamp=1773144001),
        sendgrid_event(message, "deferred", timestamp=1773144003),
    ]
    post_sendgrid(client, sendgrid_key, events, web_app.clock.now())
    row = load(web_app, Message, message.id)
    assert (row.provider_status, int(row.provider_status_at.timestamp())) == ("opened", 1773144010)


def test_a_hard_bounce_suppresses_the_address(
    client: TestClient, web_app: App, sendgrid_key: ec.EllipticCurvePrivateKey, message: Message
) -> None:
    event = sendgrid_event(message, "bounce", type="bounce", status="5.1.1", reason="no such user")
    post_sendgrid(client, sendgrid_key, [event], web_app.clock.now())
    row = load(web_app, Message, message.id)
    assert (row.provider_status, row.error) == ("bounced", "sendgrid bounce bounce 5.1.1")
    assert suppressions(web_app) == [("email", "ada@example.com", "bounce")]
    assert consents(web_app) == []


@pytest.mark.parametrize(
    ("kind", "fields", "status"),
    [("bounce", {"type": "blocked"}, "blocked"), ("dropped", {"reason": "Invalid"}, "dropped")],
)
def test_blocked_and_dropped_only_record_the_status(
    client: TestClient,
    web_app: App,
    sendgrid_key: ec.EllipticCurvePrivateKey,
    message: Message,
    kind: str,
    fields: dict[str, Any],
    status: str,
) -> None:
    event = sendgrid_event(message, kind, **fields)
    post_sendgrid(client, sendgrid_key, [event], web_app.clock.now())
    assert load(web_app, Message, message.id).provider_status == status
    assert suppressions(web_app) == []
    assert load(web_app, Member, message.member_id).email_consent is True


def test_a_spam_report_suppresses_and_revokes_marketing_consent(
    client: TestClient, web_app: App, sendgrid_key: ec.EllipticCurvePrivateKey, message: Message
) -> None:
    post_sendgrid(
        client, sendgrid_key, [sendgrid_event(message, "spamreport")], web_app.clock.now()
    )
    assert suppressions(web_app) == [("email", "ada@example.com", "spam_report")]
    assert consents(web_app) == [(message.member_id, "email", False, "sendgrid:spamreport")]
    assert load(web_app, Member, message.member_id).email_consent is False
    assert load(web_app, Message, message.id).provider_status == "spam_reported"


@pytest.mark.parametrize("kind", ["unsubscribe", "group_unsubscribe"])
def test_an_unsubscribe_revokes_marketing_consent(
    client: TestClient,
    web_app: App,
    sendgrid_key: ec.EllipticCurvePrivateKey,
    message: Message,
    kind: str,
) -> None:
    post_sendgrid(client, sendgrid_key, [sendgrid_event(message, kind)], web_app.clock.now())
    assert consents(web_app) == [(message.member_id, "email", False, "sendgrid:unsubscribe")]
    assert load(web_app, Member, message.member_id).email_consent is False
    assert suppressions(web_app) == []


def test_an_unknown_message_is_reconciled_to_sent(
    client: TestClient, web_app: App, sendgrid_key: ec.EllipticCurvePrivateKey, member: Member
) -> None:
    message = make_message(web_app, member, state="unknown", sent_at=None)
    event = sendgrid_event(
        message, "delivered", timestamp=1773144100, sg_message_id="abc123.filterdrecv-1-0"
    )
    post_sendgrid(client, sendgrid_key, [event], web_app.clock.now())
    row = load(web_app, Message, message.id)
    assert (row.state, row.provider_id, row.provider_status) == ("sent", "abc123", "delivered")
    assert int(row.sent_at.timestamp()) == 1773144100


def test_the_recorded_provider_id_is_kept(
    client: TestClient, web_app: App, sendgrid_key: ec.EllipticCurvePrivateKey, message: Message
) -> None:
    event = sendgrid_event(message, "delivered", sg_message_id="other.filterdrecv")
    post_sendgrid(client, sendgrid_key, [event], web_app.clock.now())
    assert load(web_app, Message, message.id).provider_id == "x-message-1"


def test_events_for_messages_we_do_not_know_are_stored_and_ignored(
    client: TestClient, web_app: App, sendgrid_key: ec.EllipticCurvePrivateKey, message: Message
) -> None:
    sms = make_message(web_app, load(web_app, Member, message.member_id), channel="sms")
    events = [
        sendgrid_event(None, "spamreport"),
        sendgrid_event(None, "bounce", type="bounce", message_id="999999"),
        sendgrid_event(None, "unsubscribe", message_id="not-a-number"),
        sendgrid_event(sms, "delivered"),
    ]
    before = snapshot(web_app)
    response = post_sendgrid(client, sendgrid_key, events, web_app.clock.now())
    assert response.status_code == 200
    after = snapshot(web_app)
    assert {**after, "provider_events": []} == {**before, "provider_events": []}
    stored = provider_events(web_app, "sendgrid")
    assert [e.provider_event_id for e in stored] == [e["sg_event_id"] for e in events]
    assert all(e.applied_at is None for e in stored)


def test_duplicates_are_applied_once(
    client: TestClient, web_app: App, sendgrid_key: ec.EllipticCurvePrivateKey, message: Message
) -> None:
    spam = sendgrid_event(message, "spamreport")
    delivered = sendgrid_event(message, "delivered")
    post_sendgrid(client, sendgrid_key, [delivered, spam, spam], web_app.clock.now())
    response = post_sendgrid(client, sendgrid_key, [spam, delivered], web_app.clock.now())
    assert response.status_code == 200
    assert len(provider_events(web_app, "sendgrid")) == 2
    assert consents(web_app) == [(message.member_id, "email", False, "sendgrid:spamreport")]
    assert suppressions(web_app) == [("email", "ada@example.com", "spam_report")]


def test_an_event_without_an_id_is_deduplicated_on_its_content(
    client: TestClient, web_app: App, sendgrid_key: ec.EllipticCurvePrivateKey, message: Message
) -> None:
    event = sendgrid_event(message, "delivered")
    del event["sg_event_id"]
    post_sendgrid(client, sendgrid_key, [event], web_app.clock.now())
    post_sendgrid(client, sendgrid_key, [event], web_app.clock.now())
    stored = provider_events(web_app, "sendgrid")
    assert len(stored) == 1 and stored[0].provider_event_id.startswith("sha256:")


def _refusals(
    key: ec.EllipticCurvePrivateKey, other: ec.EllipticCurvePrivateKey, body: bytes, now: Any
) -> dict[str, tuple[bytes, dict[str, str]]]:
    good = sendgrid_headers(key, body, now)
    tampered = body.replace(b"spamreport", b"delivered")
    return {
        "tampered body": (tampered, good),
        "other key": (body, sendgrid_headers(other, body, now)),
        "no signature": (body, {k: v for k, v in good.items() if "Signature" not in k}),
        "no timestamp": (body, {k: v for k, v in good.items() if "Timestamp" not in k}),
        "garbage signature": (
            body,
            {**good, "X-Twilio-Email-Event-Webhook-Signature": "not base64!"},
        ),
        "stale": (body, sendgrid_headers(key, body, now - timedelta(minutes=11))),
        "from the future": (body, sendgrid_headers(key, body, now + timedelta(minutes=11))),
        "timestamp swapped": (
            body,
            {**good, "X-Twilio-Email-Event-Webhook-Timestamp": str(int(now.timestamp()) + 1)},
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "tampered body",
        "other key",
        "no signature",
        "no timestamp",
        "garbage signature",
        "stale",
        "from the future",
        "timestamp swapped",
    ],
)
def test_bad_signatures_are_refused_and_change_nothing(
    client: TestClient,
    web_app: App,
    sendgrid_key: ec.EllipticCurvePrivateKey,
    message: Message,
    case: str,
) -> None:
    body = json.dumps([sendgrid_event(message, "spamreport")]).encode()
    other = ec.generate_private_key(ec.SECP256R1())
    content, headers = _refusals(sendgrid_key, other, body, web_app.clock.now())[case]
    before = snapshot(web_app)
    response = client.post("/webhooks/sendgrid", content=content, headers=headers)
    assert response.status_code == 403
    assert snapshot(web_app) == before


def test_without_a_configured_key_everything_is_refused(
    web_app: App, sendgrid_key: ec.EllipticCurvePrivateKey, message: Message
) -> None:
    from web.app import create_app

    settings = web_app.settings.model_copy(update={"sendgrid_webhook_public_key": None})
    unkeyed = App(settings, web_app.database, web_app.clock)
    with TestClient(create_app(unkeyed)) as client:
        events = [sendgrid_event(message, "spamreport")]
        response = post_sendgrid(client, sendgrid_key, events, web_app.clock.now())
    assert response.status_code == 403
    assert consents(web_app) == [] and provider_events(web_app, "sendgrid") == []


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"event": "delivered"}', b"[1, 2]", b'[{"event": NaN}]', b"\xff\xfe[]", b""],
)
def test_malformed_bodies_get_400_and_change_nothing(
    client: TestClient,
    web_app: App,
    sendgrid_key: ec.EllipticCurvePrivateKey,
    message: Message,
    body: bytes,
) -> None:
    before = snapshot(web_app)
    headers = sendgrid_headers(sendgrid_key, body, web_app.clock.now())
    response = client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert response.status_code in (400, 403)
    assert response.status_code == (403 if body.startswith(b"\xff") else 400)
    assert snapshot(web_app) == before


def test_an_empty_batch_is_fine(
    client: TestClient, web_app: App, sendgrid_key: ec.EllipticCurvePrivateKey
) -> None:
    assert post_sendgrid(client, sendgrid_key, [], web_app.clock.now()).status_code == 200


def test_concurrent_redeliveries_are_applied_once(
    web_app: App, sendgrid_key: ec.EllipticCurvePrivateKey, message: Message
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from web.app import create_app

    events = [sendgrid_event(message, "delivered"), sendgrid_event(message, "spamreport")]

    def deliver(_: int) -> int:
        with TestClient(create_app(web_app)) as client:
            return int(post_sendgrid(client, sendgrid_key, events, web_app.clock.now()).status_code)

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(deliver, range(4))) == [200] * 4
    assert len(provider_events(web_app, "sendgrid")) == 2
    assert consents(web_app) == [(message.member_id, "email", False, "sendgrid:spamreport")]
