"""Twilio emulator, driven through the twilio client; callbacks checked with its validator."""

from __future__ import annotations

import base64
import itertools

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator

from sandbox.sink import WebhookSink
from sandbox.twilio import TwilioSandbox
from tests.sandbox.clients import twilio_client

MEMBER = "+48500100200"
SENDER = "+15005550006"
SERVICE = "MG" + "1" * 32


def valid_signature(sandbox: TwilioSandbox, sink: WebhookSink, path: str) -> list[bool]:
    validator = RequestValidator(sandbox.auth_token)
    return [
        validator.validate(sink.url(r.path), r.form(), r.headers["x-twilio-signature"])
        for r in sink.requests(path=path)
    ]


def test_create_is_201_with_the_message_resource(twilio_sandbox: TwilioSandbox) -> None:
    client = twilio_client(twilio_sandbox)

    message = client.messages.create(to=MEMBER, from_=SENDER, body="You have 120 points")

    assert message.sid.startswith("SM") and len(message.sid) == 34
    assert message.status == "queued"
    assert message.direction == "outbound-api"
    assert message.num_segments == "1"
    assert message.error_code is None
    assert message.account_sid == twilio_sandbox.account_sid
    (recorded,) = twilio_sandbox.requests(method="POST")
    assert recorded.status == 201
    assert recorded.headers["content-type"] == "application/x-www-form-urlencoded"
    credentials = f"{twilio_sandbox.account_sid}:{twilio_sandbox.auth_token}".encode()
    assert recorded.headers["authorization"] == "Basic " + base64.b64encode(credentials).decode()
    assert recorded.form() == {"To": MEMBER, "From": SENDER, "Body": "You have 120 points"}


def test_messaging_service_sends_are_accepted(twilio_sandbox: TwilioSandbox) -> None:
    twilio_sandbox.messaging_services = {SERVICE: ["+15005550007"]}
    client = twilio_client(twilio_sandbox)

    message = client.messages.create(to=MEMBER, messaging_service_sid=SERVICE, body="Hi")

    assert message.status == "accepted"
    assert message.messaging_service_sid == SERVICE
    assert message.from_ == "+15005550007"


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("a" * 160, "1"),
        ("a" * 161, "2"),
        ("a" * 306, "2"),
        ("a" * 307, "3"),
        ("€" * 80, "1"),
        ("€" * 81, "2"),
        ("ą" * 70, "1"),
        ("Zażółć " * 10 + "x", "2"),
        ("ą" * 134, "2"),
        ("ą" * 135, "3"),
    ],
)
def test_segments_follow_gsm7_and_ucs2(
    twilio_sandbox: TwilioSandbox, body: str, segments: str
) -> None:
    client = twilio_client(twilio_sandbox)

    message = client.messages.create(to=MEMBER, from_=SENDER, body=body)

    assert message.num_segments == segments


@pytest.mark.parametrize(
    ("to", "body", "code"),
    [
        ("12345", "hi", 21211),
        ("", "hi", 21604),
        (MEMBER, "", 21602),
        (MEMBER, "x" * 1601, 21617),
    ],
)
def test_invalid_requests_are_400_with_twilio_codes(
    twilio_sandbox: TwilioSandbox, to: str, body: str, code: int
) -> None:
    client = twilio_client(twilio_sandbox)

    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(to=to, from_=SENDER, body=body)

    assert caught.value.status == 400
    assert caught.value.code == code
    assert twilio_sandbox.messages == {}


def test_wrong_token_is_401(twilio_sandbox: TwilioSandbox) -> None:
    client = twilio_client(twilio_sandbox, token="f" * 32)

    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(to=MEMBER, from_=SENDER, body="hi")

    assert (caught.value.status, caught.value.code) == (401, 20003)


def test_stop_blocks_with_21610_and_start_allows_again(
    twilio_sandbox: TwilioSandbox, webhook_sink: WebhookSink
) -> None:
    twilio_sandbox.inbound_url = webhook_sink.url("/sms/inbound")
    client = twilio_client(twilio_sandbox)

    twilio_sandbox.send_inbound(MEMBER, SENDER, " Stop ")
    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(to=MEMBER, from_=SENDER, body="Points!")
    other_sender = client.messages.create(to=MEMBER, from_="+15005550009", body="Points!")
    twilio_sandbox.send_inbound(MEMBER, SENDER, "START")
    again = client.messages.create(to=MEMBER, from_=SENDER, body="Points!")

    assert (caught.value.status, caught.value.code) == (400, 21610)
    assert other_sender.status == "queued"
    assert again.status == "queued"


def test_inbound_messages_are_posted_signed_with_opt_out_type(
    twilio_sandbox: TwilioSandbox, webhook_sink: WebhookSink
) -> None:
    twilio_sandbox.inbound_url = webhook_sink.url("/sms/inbound")

    for body in ("STOP", "start", "HELP", "How many points do I have?"):
        twilio_sandbox.send_inbound(MEMBER, SENDER, body)
    assert twilio_sandbox.wait_idle()

    posts = webhook_sink.requests(path="/sms/inbound")
    assert [p.form().get("OptOutType") for p in posts] == ["STOP", "START", "HELP", None]
    assert [p.form()["Body"] for p in posts][-1] == "How many points do I have?"
    assert all(p.form()["From"] == MEMBER and p.form()["To"] == SENDER for p in posts)
    assert all(valid_signature(twilio_sandbox, webhook_sink, "/sms/inbound"))


def test_status_callbacks_queued_sent_delivered_and_undelivered(
    twilio_sandbox: TwilioSandbox, webhook_sink: WebhookSink
) -> None:
    twilio_sandbox.undelivered = {"+48500100999": 30003}
    client = twilio_client(twilio_sandbox)
    callback = webhook_sink.url("/sms/status")

    ok = client.messages.create(to=MEMBER, from_=SENDER, body="a", status_callback=callback)
    bad = client.messages.create(
        to="+48500100999", from_=SENDER, body="b", status_callback=callback
    )
    assert twilio_sandbox.wait_idle()

    posts = webhook_sink.requests(path="/sms/status")
    by_sid: dict[str, list[str]] = {}
    for post in posts:
        by_sid.setdefault(post.form()["MessageSid"], []).append(post.form()["MessageStatus"])
    assert by_sid[ok.sid] == ["queued", "sent", "delivered"]
    assert by_sid[bad.sid] == ["queued", "sent", "undelivered"]
    assert posts[-1].form()["ErrorCode"] == "30003"
    assert all(valid_signature(twilio_sandbox, webhook_sink, "/sms/status"))
    fetched = client.messages(bad.sid).fetch()
    assert (fetched.status, fetched.error_code) == ("undelivered", 30003)


def test_each_sender_is_paced_by_segments(
    twilio_sandbox: TwilioSandbox, webhook_sink: WebhookSink
) -> None:
    twilio_sandbox.segments_per_second = 10.0
    client = twilio_client(twilio_sandbox)
    callback = webhook_sink.url("/sms/status")
    # The emulator's first callback also opens its connection to the sink: not timed.
    client.messages.create(to=MEMBER, from_="+15005550007", body="x", status_callback=callback)
    assert twilio_sandbox.wait_idle()

    for _ in range(3):
        client.messages.create(to=MEMBER, from_=SENDER, body="x" * 200, status_callback=callback)
    client.messages.create(to=MEMBER, from_="+15005550009", body="x", status_callback=callback)
    assert twilio_sandbox.wait_idle()

    sent = [r for r in webhook_sink.requests() if r.form()["MessageStatus"] == "sent"]
    first_sender = [r.at for r in sent if r.form()["From"] == SENDER]
    other = next(r.at for r in sent if r.form()["From"] == "+15005550009")
    gaps = [b - a for a, b in itertools.pairwise(first_sender)]
    assert all(0.15 <= gap <= 0.35 for gap in gaps), gaps  # two segments at 10/s
    assert other < first_sender[-1]  # not queued behind the other sender's messages


def test_messages_waiting_past_the_queue_limit_fail_with_30001(
    twilio_sandbox: TwilioSandbox, webhook_sink: WebhookSink
) -> None:
    twilio_sandbox.segments_per_second = 1.0
    twilio_sandbox.queue_timeout_s = 0.2
    client = twilio_client(twilio_sandbox)
    callback = webhook_sink.url("/sms/status")

    client.messages.create(to=MEMBER, from_=SENDER, body="first", status_callback=callback)
    late = client.messages.create(to=MEMBER, from_=SENDER, body="late", status_callback=callback)
    assert twilio_sandbox.wait_idle()

    assert twilio_sandbox.message(late.sid)["status"] == "failed"
    assert twilio_sandbox.message(late.sid)["error_code"] == 30001


def test_rate_limit_is_429_with_code_20429(twilio_sandbox: TwilioSandbox) -> None:
    twilio_sandbox.set_faults(rate_limit=2, rate_window_s=60)
    client = twilio_client(twilio_sandbox)
    client.messages.create(to=MEMBER, from_=SENDER, body="1")
    client.messages.create(to=MEMBER, from_=SENDER, body="2")

    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(to=MEMBER, from_=SENDER, body="3")

    assert (caught.value.status, caught.value.code) == (429, 20429)
    assert len(twilio_sandbox.messages) == 2


def test_validity_period_shorter_than_the_wait_fails_the_message(
    twilio_sandbox: TwilioSandbox,
) -> None:
    twilio_sandbox.segments_per_second = 0.5
    client = twilio_client(twilio_sandbox)

    client.messages.create(to=MEMBER, from_=SENDER, body="first")
    late = client.messages.create(to=MEMBER, from_=SENDER, body="late", validity_period=1)
    assert twilio_sandbox.wait_idle()

    assert twilio_sandbox.message(late.sid)["status"] == "failed"


def test_messages_can_be_listed(twilio_sandbox: TwilioSandbox) -> None:
    client = twilio_client(twilio_sandbox)
    sids = {client.messages.create(to=MEMBER, from_=SENDER, body=f"{i}").sid for i in range(3)}

    listed = client.messages.list(limit=10)

    assert {m.sid for m in listed} == sids
