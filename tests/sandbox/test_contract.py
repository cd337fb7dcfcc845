"""Typical SendGrid and Twilio requests, and an error answer, are valid against the official
OpenAPI documents in ../shared/specs (skipped when that folder is absent).

Every request the emulators accept in the other tests is checked after each of them too
(tests/sandbox/contract.py, through the root conftest.py).
"""

from __future__ import annotations

import pytest
from python_http_client.exceptions import BadRequestsError
from sendgrid.helpers.mail import Asm, Category, CustomArg, Mail, Personalization, To

from sandbox.sendgrid import SendGridSandbox
from sandbox.twilio import TwilioSandbox
from tests.sandbox.clients import sendgrid_client, twilio_client
from tests.sandbox.contract import specs_present, validate, validate_error_response

pytestmark = pytest.mark.skipif(
    not specs_present(), reason="../shared/specs with the providers' OpenAPI documents is absent"
)


def test_typical_sendgrid_requests_match_the_spec(sendgrid_sandbox: SendGridSandbox) -> None:
    client = sendgrid_client(sendgrid_sandbox)
    mail = Mail(from_email="club@example.com", subject="Points", html_content="<p>120</p>")
    for member in ("ann@example.com", "bob@example.com"):
        personalization = Personalization()
        personalization.add_to(To(member))
        personalization.dynamic_template_data = {"points": 120}
        mail.add_personalization(personalization)
    mail.category = Category("points")
    mail.asm = Asm(42, [42, 43])
    mail.custom_arg = CustomArg("journey", "welcome")

    client.send(mail)
    client.client.mail.send.post(
        request_body={
            "personalizations": [{"to": [{"email": "ann@example.com"}]}],
            "from": {"email": "club@example.com"},
            "template_id": "d-0123456789abcdef0123456789abcdef",
        }
    )

    with pytest.raises(BadRequestsError):
        client.client.mail.send.post(request_body={"from": {"email": "club@example.com"}})

    recorded = sendgrid_sandbox.requests(path="/v3/mail/send")
    assert [r.status for r in recorded] == [202, 202, 400]
    for accepted in recorded[:2]:
        validate("sendgrid", accepted)
    validate_error_response("sendgrid", recorded[2])


def test_typical_twilio_requests_match_the_spec(twilio_sandbox: TwilioSandbox) -> None:
    client = twilio_client(twilio_sandbox)

    client.messages.create(
        to="+48500100200",
        from_="+15005550006",
        body="Zażółć 120 points",
        status_callback="https://loyalty.example.com/webhooks/twilio/status",
        validity_period=3600,
    )
    client.messages.create(to="+48500100200", messaging_service_sid="MG" + "1" * 32, body="Hi")

    for recorded in twilio_sandbox.requests(method="POST"):
        validate("twilio", recorded)
