"""SendGrid and Twilio requests checked against the official OpenAPI documents in
../shared/specs (the checks do nothing when that folder is absent).

`check_accepted` runs after every test that used the SendGrid or Twilio emulator (the root
conftest.py hands it to sandbox.pytest_plugin), so every request the emulators accepted in
the suite is checked, whichever pytest-xdist worker ran its test.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from sandbox.recorder import RecordedRequest

SPECS = Path(__file__).resolve().parents[2] / ".." / "shared" / "specs"
SPEC_FILES = {"sendgrid": "tsg_mail_v3.json", "twilio": "twilio_api_v2010.json"}
SERVERS = {"sendgrid": "https://api.sendgrid.com", "twilio": "https://api.twilio.com"}


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


def validate_error_response(provider: str, recorded: RecordedRequest) -> None:
    """An error answer has the documented shape (its request is invalid on purpose)."""
    request = MockRequest(SERVERS[provider], recorded.method.lower(), recorded.path)
    assert recorded.status is not None
    response = MockResponse(recorded.response_body, status_code=recorded.status)
    openapi(provider).validate_response(request, response)


def specs_present() -> bool:
    return all((SPECS / f).is_file() for f in SPEC_FILES.values())


def check_accepted(provider: str, accepted: list[RecordedRequest]) -> None:
    """Every request the emulator accepted during a test is valid against the spec."""
    if specs_present():
        for recorded in accepted:
            validate(provider, recorded)
