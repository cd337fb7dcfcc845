"""Every SendGrid and Twilio request the emulators accepted is valid against the official
OpenAPI documents in ../shared/specs (skipped when that folder is absent).

These run after the other sandbox tests (see conftest.py) and check what they sent too.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from python_http_client.exceptions import BadRequestsError
from sendgrid.helpers.mail import Asm, Category, CustomArg, Mail, Personalization, To

from sandbox.pytest_plugin import ACCEPTED_REQUESTS
from sandbox.recorder import RecordedRequest
from sandbox.sendgrid import SendGridSandbox
from sandbox.twilio import TwilioSandbox
from tests.sandbox.clients import sendgrid_client, twilio_client

SPECS = Path(__file__).resolve().parents[2] / ".." / "shared" / "specs"
SPEC_FILES = {"sendgrid": "tsg_mail_v3.json", "twilio": "twilio_api_v2010.json"}
SERVERS = {"sendgrid": "https://api.sendgrid.com", "twilio": "https://api.twilio.com"}

pytestmark = pytest.mark.skipif(
    not all((SPECS / f).is_file() for f in SPEC_FILES.values()),
    reason="../shared/specs with the providers' OpenAPI documents is absent",
)


def _allow_string_help_links(document: dict[str, Any]) -> None:
    """Known erratum: the document types an error's `help` as an object, while the API
    answers a documentation link string (or null). Only that property is widened."""
    error = document["components"]["schemas"]["ErrorResponse"]["properties"]["errors"]["items"]
    assert error["properties"]["help"]["type"] == "object", "erratum fixed upstream: drop this"
    error["properties"]["help"] = {"nullable": True}


@cache
def openapi(provider: str) -> OpenAPI:
    document = json.loads((SPECS / SPEC_FILES[provider]).read_text())
    if provider == "sendgrid":
        _allow_top_level_custom_args_object(document)
        _allow_string_help_links(document)
    return OpenAPI.from_dict(document, config=Config(spec_validator_cls=None))


def _allow_top_level_custom_args_object(document: dict[str, Any]) -> None:
    """Known erratum: the document types the top-level `custom_args` as a string, while the
    API and the official client (`Mail.custom_arg`) use an object of strings, as in each
    personalization. Only that one property is widened, in memory."""
    body = document["components"]["requestBodies"]["PostMailSend"]["content"]
    properties = body["application/json"]["schema"]["properties"]
    assert properties["custom_args"]["type"] == "string", "erratum fixed upstream: drop this"
    properties["custom_args"] = {"type": "object", "additionalProperties": {"type": "string"}}


def validate(provider: str, recorded: RecordedRequest) -> None:
    """Replay what the emulator saw, and what it answered, against the provider's spec."""
    request = MockRequest(
        SERVERS[provider],
        recorded.method.lower(),
        recorded.path,
        headers={"Authorization": recorded.headers.get("authorization", "")},
        data=recorded.body,
        content_type=recorded.headers.get("content-type", "application/json").split(";")[0],
    )
    openapi(provider).validate_request(request)
    assert recorded.status is not None
    if provider == "sendgrid" and recorded.status == 200:
        # Sandbox mode answers 200, which the document does not list; nothing else to check.
        assert recorded.json()["mail_settings"]["sandbox_mode"]["enable"] is True
        return
    response = MockResponse(
        recorded.response_body,
        status_code=recorded.status,
        headers={k: v for k, v in recorded.response_headers.items() if k != "content-length"},
        content_type=recorded.response_headers.get("content-type", "application/json"),
    )
    openapi(provider).validate_response(request, response)


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


def validate_error_response(provider: str, recorded: RecordedRequest) -> None:
    """An error answer has the documented shape (its request is invalid on purpose)."""
    request = MockRequest(SERVERS[provider], recorded.method.lower(), recorded.path)
    assert recorded.status is not None
    response = MockResponse(recorded.response_body, status_code=recorded.status)
    openapi(provider).validate_response(request, response)


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


@pytest.mark.parametrize("provider", ["sendgrid", "twilio"])
def test_every_request_accepted_in_this_session_matches_the_spec(provider: str) -> None:
    accepted = ACCEPTED_REQUESTS[provider]
    if not accepted:
        pytest.skip(f"no {provider} request was accepted earlier in this session")

    for recorded in accepted:
        validate(provider, recorded)
