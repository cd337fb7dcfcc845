"""Twilio status callbacks and inbound messages: verified against the public URL, applied once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from starlette.testclient import TestClient
from twilio.request_validator import RequestValidator

from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.models import Member, Message, Suppression
from tests.factories import make_member
from tests.web.support import (
    PUBLIC_BASE_URL,
    TWILIO_AUTH_TOKEN,
    consents,
    inbound_params,
    load,
    make_message,
    post_twilio,
    provider_events,
    snapshot,
    status_params,
    suppressions,
    twilio_signature,
)

PHONE = "+48600100200"
EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response />'


@pytest.fixture
def member(web_app: App) -> Member:
    return make_member(web_app, phone=PHONE, sms_consent=True)


@pytest.fixture
def message(web_app: App, member: Member) -> Message:
    return make_message(web_app, member, channel="sms", provider_id="SM" + "1" * 32)


def status_path(message: Message) -> str:
    return f"/webhooks/twilio/status?message_id={message.id}"


# -- status callbacks -------------------------------------------------------------------


def test_a_delivery_callback_records_the_status(
    client: TestClient, web_app: App, message: Message
) -> None:
    sid = str(message.provider_id)
    for status in ("queued", "sent", "delivered"):
        response = post_twilio(client, status_path(message), status_params(sid, status))
        assert response.status_code == 200
    row = load(web_app, Message, message.id)
    assert (row.state, row.provider_status, row.error) == ("sent", "delivered", None)
    assert row.provider_status_at == web_app.clock.now()
    kinds = [e.kind for e in provider_events(web_app, "twilio")]
    assert kinds == ["status.queued", "status.sent", "status.delivered"]


def test_an_undelivered_callback_keeps_the_error_code(
    client: TestClient, web_app: App, message: Message
) -> None:
    params = status_params(str(message.provider_id), "undelivered", ErrorCode="30003")
    post_twilio(client, status_path(message), params)
    row = load(web_app, Message, message.id)
    assert (row.provider_status, row.error) == ("undelivered", "twilio 30003")


def test_a_callback_signed_with_hmac_sha256_is_accepted_and_a_mismatch_refused(
    client: TestClient, web_app: App, message: Message
) -> None:
    # Given Twilio signing with HMAC-SHA256, as its signature settings header says
    path = status_path(message)
    params = status_params(str(message.provider_id), "undelivered", ErrorCode="30003")
    validator = RequestValidator(TWILIO_AUTH_TOKEN)
    sha256 = validator.compute_signature(PUBLIC_BASE_URL + path, params, "HMAC_SHA256")
    settings = {"X-Twilio-Webhooks-Signature-Settings": "algorithm=HMAC_SHA256"}
    # When the same SHA-256 signature comes without the header (read as SHA-1), it is refused
    refused = client.post(path, data=params, headers={"X-Twilio-Signature": sha256})
    assert refused.status_code == 403
    # And with the header, it is applied
    response = client.post(path, data=params, headers={"X-Twilio-Signature": sha256, **settings})
    assert response.status_code == 200
    row = load(web_app, Message, message.id)
    assert (row.provider_status, row.error) == ("undelivered", "twilio 30003")


def test_late_callbacks_do_not_downgrade(
    client: TestClient, web_app: App, message: Message
) -> None:
    sid = str(message.provider_id)
    post_twilio(client, status_path(message), status_params(sid, "delivered"))
    post_twilio(client, status_path(message), status_params(sid, "sent"))
    assert load(web_app, Message, message.id).provider_status == "delivered"


def test_an_unknown_message_is_reconciled_by_its_callback(
    client: TestClient, web_app: App, member: Member
) -> None:
    message = make_message(web_app, member, channel="sms", state="unknown", sent_at=None)
    post_twilio(client, status_path(message), status_params("SM" + "a" * 32, "delivered"))
    row = load(web_app, Message, message.id)
    assert (row.state, row.provider_id, row.provider_status) == (
        "sent",
        "SM" + "a" * 32,
        "delivered",
    )
    assert row.sent_at == web_app.clock.now()


def test_duplicate_callbacks_are_applied_once(
    client: TestClient, web_app: App, message: Message
) -> None:
    params = status_params(str(message.provider_id), "failed", ErrorCode="30007")
    post_twilio(client, status_path(message), params)
    first = snapshot(web_app)
    response = post_twilio(client, status_path(message), params)
    assert response.status_code == 200
    assert snapshot(web_app) == first
    assert len(provider_events(web_app, "twilio")) == 1


def test_callbacks_for_other_messages_are_stored_and_ignored(
    client: TestClient, web_app: App, message: Message
) -> None:
    email = make_message(web_app, load(web_app, Member, message.member_id), channel="email")
    before = snapshot(web_app)
    paths = [
        "/webhooks/twilio/status",
        "/webhooks/twilio/status?message_id=999999",
        f"/webhooks/twilio/status?message_id={email.id}",
        status_path(message),  # a SID other than the one recorded
    ]
    for number, path in enumerate(paths):
        response = post_twilio(client, path, status_params(f"SM{number:032d}", "delivered"))
        assert response.status_code == 200
    assert {**snapshot(web_app), "provider_events": []} == {**before, "provider_events": []}
    assert [e.applied_at for e in provider_events(web_app, "twilio")] == [None] * 4


@pytest.mark.parametrize(
    "case", ["tampered", "missing", "other token", "internal url", "other message id"]
)
def test_bad_status_signatures_are_refused_and_change_nothing(
    client: TestClient, web_app: App, message: Message, case: str
) -> None:
    path = status_path(message)
    params = status_params(str(message.provider_id), "undelivered", ErrorCode="30003")
    signature = twilio_signature(path, params)
    headers = {"X-Twilio-Signature": signature}
    if case == "tampered":
        params = {**params, "ErrorCode": "30005"}
    elif case == "missing":
        headers = {}
    elif case == "other token":
        headers = {"X-Twilio-Signature": twilio_signature(path, params, token="f" * 32)}
    elif case == "internal url":
        internal = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(
            "http://testserver" + path, params
        )
        headers = {"X-Twilio-Signature": internal}
    else:
        path = f"/webhooks/twilio/status?message_id={message.id + 1}"
    before = snapshot(web_app)
    response = client.post(path, data=params, headers=headers)
    assert response.status_code == 403
    assert snapshot(web_app) == before


@pytest.mark.parametrize("missing", ["MessageSid", "MessageStatus"])
def test_a_status_without_its_fields_gets_400(
    client: TestClient, web_app: App, message: Message, missing: str
) -> None:
    params = status_params(str(message.provider_id), "delivered")
    del params[missing]
    before = snapshot(web_app)
    assert post_twilio(client, status_path(message), params).status_code == 400
    assert snapshot(web_app) == before


# -- inbound messages -------------------------------------------------------------------

INBOUND = "/webhooks/twilio/inbound"


@pytest.mark.parametrize(
    "text",
    [
        "STOP",
        "stop",
        "  Stop \n",
        "STOPALL",
        "unsubscribe",
        "Cancel",
        "END",
        "quit",
        "REVOKE",
        "OptOut",
    ],
)
def test_stop_revokes_sms_consent_for_every_member_with_the_number(
    client: TestClient, web_app: App, member: Member, text: str
) -> None:
    other = make_member(web_app, phone=PHONE, sms_consent=True)
    response = post_twilio(client, INBOUND, inbound_params(text))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    assert "<Message>Acme Rewards: you are unsubscribed" in response.text
    assert "Reply START" in response.text
    assert load(web_app, Member, member.id).sms_consent is False
    assert load(web_app, Member, other.id).sms_consent is False
    assert consents(web_app) == [
        (member.id, "sms", False, "sms:stop"),
        (other.id, "sms", False, "sms:stop"),
    ]
    assert suppressions(web_app) == [("sms", PHONE, "stop")]


def test_stop_is_confirmed_only_once(client: TestClient, web_app: App, member: Member) -> None:
    first = post_twilio(client, INBOUND, inbound_params("STOP"))
    again = post_twilio(client, INBOUND, inbound_params("stop"))
    assert "<Message>" in first.text
    assert again.text == EMPTY
    assert len(consents(web_app)) == 1
    assert len(provider_events(web_app, "twilio")) == 2


def test_a_redelivered_inbound_message_is_applied_once(
    client: TestClient, web_app: App, member: Member
) -> None:
    params = inbound_params("STOP")
    post_twilio(client, INBOUND, params)
    make_member(web_app, phone=PHONE, sms_consent=True)  # joins after the first delivery
    before = snapshot(web_app)
    response = post_twilio(client, INBOUND, params)
    assert response.text == EMPTY
    assert snapshot(web_app) == before


@pytest.mark.parametrize("text", ["START", "yes", " Unstop "])
def test_start_restores_consent_and_lifts_the_stop(
    client: TestClient, web_app: App, clock: FrozenClock, member: Member, text: str
) -> None:
    post_twilio(client, INBOUND, inbound_params("STOP"))
    clock.advance(timedelta(minutes=1))
    response = post_twilio(client, INBOUND, inbound_params(text))
    assert "<Message>Acme Rewards: you are subscribed again." in response.text
    assert load(web_app, Member, member.id).sms_consent is True
    assert suppressions(web_app) == []
    assert consents(web_app)[-1] == (member.id, "sms", True, "sms:start")


def test_start_keeps_other_suppressions(client: TestClient, web_app: App, member: Member) -> None:
    with web_app.database.transaction() as session:
        session.add(
            Suppression(
                channel="sms",
                address=PHONE,
                reason="invalid_number",
                created_at=web_app.clock.now(),
            )
        )
    post_twilio(client, INBOUND, inbound_params("START"))
    assert suppressions(web_app) == [("sms", PHONE, "invalid_number")]


@pytest.mark.parametrize("text", ["HELP", "info", " Help "])
def test_help_answers_with_program_contact_frequency_and_how_to_stop(
    client: TestClient, web_app: App, member: Member, text: str
) -> None:
    response = post_twilio(client, INBOUND, inbound_params(text))
    expected = (
        "<Message>Acme Rewards: help at help@acme.example. Up to 4 msgs/month. "
        "Msg&amp;data rates may apply. Reply STOP to cancel.</Message>"
    )
    assert expected in response.text
    assert load(web_app, Member, member.id).sms_consent is True
    assert [e.kind for e in provider_events(web_app, "twilio")] == ["inbound.help"]


@pytest.mark.parametrize("text", ["Stop please", "9", "", "STOP STOP"])
def test_other_messages_are_stored_and_get_no_answer(
    client: TestClient, web_app: App, member: Member, text: str
) -> None:
    response = post_twilio(client, INBOUND, inbound_params(text))
    assert (response.status_code, response.text) == (200, EMPTY)
    assert load(web_app, Member, member.id).sms_consent is True
    [event] = provider_events(web_app, "twilio")
    assert (event.kind, event.applied_at, event.payload["Body"]) == ("inbound.message", None, text)


def test_when_twilio_answered_already_we_stay_silent(
    client: TestClient, web_app: App, member: Member
) -> None:
    response = post_twilio(client, INBOUND, inbound_params("STOP", OptOutType="STOP"))
    assert response.text == EMPTY
    assert load(web_app, Member, member.id).sms_consent is False


@pytest.mark.parametrize("case", ["tampered", "missing", "other token", "internal url"])
def test_bad_inbound_signatures_are_refused_and_change_nothing(
    client: TestClient, web_app: App, member: Member, case: str
) -> None:
    params = inbound_params("STOP")
    headers = {"X-Twilio-Signature": twilio_signature(INBOUND, params)}
    if case == "tampered":
        params = {**params, "From": "+48600999999"}
    elif case == "missing":
        headers = {}
    elif case == "other token":
        headers = {"X-Twilio-Signature": twilio_signature(INBOUND, params, token="f" * 32)}
    else:
        validator = RequestValidator(TWILIO_AUTH_TOKEN)
        headers = {
            "X-Twilio-Signature": validator.compute_signature("http://testserver" + INBOUND, params)
        }
    before = snapshot(web_app)
    response = client.post(INBOUND, data=params, headers=headers)
    assert response.status_code == 403
    assert snapshot(web_app) == before


def test_a_body_that_is_not_a_form_is_refused(client: TestClient, web_app: App) -> None:
    before = snapshot(web_app)
    signature = twilio_signature(INBOUND, {})
    response = client.post(INBOUND, content=b"\xff\x00", headers={"X-Twilio-Signature": signature})
    assert response.status_code == 400
    signed_empty = client.post(INBOUND, content=b"", headers={"X-Twilio-Signature": signature})
    assert signed_empty.status_code == 400
    assert snapshot(web_app) == before
