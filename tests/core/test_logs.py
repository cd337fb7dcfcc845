"""Logs never carry personal data or secrets, whatever logs them and at any level."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from loyalty.app import App
from loyalty.logs import JsonFormatter, redact
from sandbox.sendgrid import SendGridSandbox

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("to=ann+x@example.co.uk member_id=7", "to=<email> member_id=7"),
        ('{"To": "+48 601 234 567"}', '{"To": "<phone>"}'),
        ("Authorization: Bearer SG.abc.def", "Authorization: Bearer <secret>"),
        ("api_key=abc123 next", "api_key=<secret> next"),
        ("GET /u/AbCdEf123456-_x HTTP/1.1", "GET /u/<token> HTTP/1.1"),
        ("at 2026-11-30 19:58:53,594 message_id=12345678901", None),
    ],
)
def test_redaction_replaces_addresses_numbers_secrets_and_link_tokens(
    line: str, expected: str | None
) -> None:
    assert redact(line) == (line if expected is None else expected)


def test_a_test_send_at_debug_level_logs_neither_the_address_nor_the_api_key(
    app: App, sendgrid_sandbox: SendGridSandbox, tmp_path: Path
) -> None:
    # Given the SendGrid client and everything else logging at DEBUG
    env = {
        **os.environ,
        "DATABASE_URL": app.database.url,
        "OUTBOX_DIR": str(tmp_path / "outbox"),
        "LOG_LEVEL": "DEBUG",
        "SENDGRID_API_KEY": sendgrid_sandbox.api_key,
        "SENDGRID_BASE_URL": sendgrid_sandbox.base_url,
        "EMAIL_FROM": "club@example.com",
        "JOURNEYS_DIR": str(ROOT / "journeys"),
    }
    # When a marketer sends a test email with the `loyalty` command
    loyalty = Path(sys.executable).parent / "loyalty"
    args = ["messages", "send-test", "--template", "welcome", "--to", "ann@example.com"]
    result = subprocess.run(
        [str(loyalty), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )

    # Then it is sent, the logs are there, and none of them carries the address or the key
    assert result.returncode == 0, result.stderr
    assert len(sendgrid_sandbox.requests(path="/v3/mail/send")) == 1
    assert "ann@example.com" not in result.stderr
    assert sendgrid_sandbox.api_key not in result.stderr


def test_json_lines_carry_the_fields_and_bound_ids_and_stay_redacted() -> None:
    # Given a record as our code logs it, inside an actor that bound its message id
    record = logging.makeLogRecord(
        {
            "name": "channels.delivery",
            "levelno": logging.WARNING,
            "levelname": "WARNING",
            "msg": "message.render_failed",
            "member_id": 7,
            "error": "to ann@example.com failed, api_key=abc123",
        }
    )
    # When it is written as JSON
    with structlog.contextvars.bound_contextvars(message_id=42):
        line = JsonFormatter().format(record)

    # Then it is one object with the event, the ids and no address or secret
    fields = json.loads(line)
    assert "\n" not in line
    assert (fields["event"], fields["level"], fields["logger"]) == (
        "message.render_failed",
        "warning",
        "channels.delivery",
    )
    assert (fields["member_id"], fields["message_id"]) == (7, 42)
    assert fields["error"] == "to <email> failed, api_key=<secret>"
    assert fields["timestamp"].endswith("Z")
