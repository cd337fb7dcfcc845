"""The app as a whole: health, routing, logs without personal data, and `loyalty serve`."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.testclient import TestClient

from cli.serve import serve
from loyalty.app import App
from loyalty.db import Database
from tests.factories import make_member
from tests.web.support import (
    inbound_params,
    make_message,
    post_sendgrid,
    post_twilio,
    sendgrid_event,
)
from web.app import create_app

ROOT = Path(__file__).resolve().parents[2]


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


@pytest.mark.parametrize(
    "path", ["/webhooks/sendgrid", "/webhooks/twilio/status", "/webhooks/hubspot"]
)
def test_webhooks_only_take_posts(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 405


def test_an_oversized_body_is_refused(client: TestClient) -> None:
    body = b"[" + b" " * (17 * 1024 * 1024) + b"]"
    assert client.post("/webhooks/sendgrid", content=body).status_code == 413


def test_logs_carry_ids_and_never_addresses_or_bodies(
    client: TestClient,
    web_app: App,
    sendgrid_key: ec.EllipticCurvePrivateKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    email, phone, text = "grace@example.com", "+48600700800", "STOP"
    member = make_member(web_app, email=email, phone=phone, email_consent=True, sms_consent=True)
    message = make_message(web_app, member, unsubscribe_token="tok-logs")
    caplog.set_level(logging.DEBUG)

    post_sendgrid(
        client,
        sendgrid_key,
        [sendgrid_event(message, "spamreport", email=email)],
        web_app.clock.now(),
    )
    post_twilio(client, "/webhooks/twilio/inbound", inbound_params(text, phone=phone))
    client.post("/u/tok-logs", content=b"List-Unsubscribe=One-Click")
    client.post("/webhooks/twilio/inbound", data=inbound_params("hello there", phone=phone))
    client.post("/webhooks/sendgrid", content=f'[{{"email": "{email}"}}]'.encode())

    rendered = [
        record.getMessage() + " " + " ".join(f"{k}={v}" for k, v in vars(record).items())
        for record in caplog.records
    ]
    assert any(f"member_id={member.id}" in line for line in rendered)
    assert any(f"message_id={message.id}" in line for line in rendered)
    assert any("webhook.refused" in line for line in rendered)
    for line in rendered:
        assert email not in line and phone not in line and "hello there" not in line


def test_serve_help_names_its_options() -> None:
    result = CliRunner().invoke(serve, ["--help"])
    assert result.exit_code == 0
    assert "--host" in result.output and "--port" in result.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_runs_the_app(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'loyalty.db'}",
        "REDIS_URL": "",
    }
    code = f"from cli.serve import serve; serve(['--port', '{port}'])"
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read() if process.stdout else b""
                    pytest.fail(f"serve did not start: {output.decode(errors='replace')}")
                time.sleep(0.1)
        assert response.json() == {"status": "ok"}
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_failure_answers_500_and_logs_no_personal_data(
    web_app: App,
    tmp_path: Path,
    sendgrid_key: ec.EllipticCurvePrivateKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A database without tables: every statement fails and quotes its parameters.
    broken = App(web_app.settings, Database(f"sqlite:///{tmp_path / 'empty.db'}"), web_app.clock)
    email = "grace@example.com"
    event = sendgrid_event(None, "spamreport", email=email)  # fails storing the event
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(broken), raise_server_exceptions=False) as client:
        response = post_sendgrid(client, sendgrid_key, [event], web_app.clock.now())
    assert response.status_code == 500
    failures = [r for r in caplog.records if r.getMessage() == "web.failed"]
    assert [vars(r)["error"] for r in failures] == ["OperationalError"]
    for record in caplog.records:
        assert email not in record.getMessage() + repr(vars(record))
