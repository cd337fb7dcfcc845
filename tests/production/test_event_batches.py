"""The production shape of events that arrive together: a shop posts a batch of sign-ups.

`loyalty serve` takes 300 `member.enrolled` events, each with the new member's profile,
in one `POST /api/v1/events`; it stores them in one transaction and queues them a batch
per message. Two `loyalty worker` processes of four threads on PostgreSQL and Redis
create the members, start each one's welcome journey as a batch of enrollments, and
send the emails to the SendGrid emulator: each member's once, in a few full requests
rather than one request per sign-up.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import httpx
import pytest

from automations.versions import publish
from bench.birthday_mail import message_states
from bench.production import Stack
from bench.soak_processes import free_port, loyalty_command
from loyalty.app import App
from sandbox.sendgrid import SendGridSandbox
from tests.engine.helpers import journey_folder
from tests.processes import answers, wait_for

SIGN_UPS = 300
WELCOME = """
id: welcome_now
name: Welcome
status: active
trigger: {type: event, event: member.enrolled}
entry: {once: true}
steps:
  - {id: hello, type: send_email, template: hello}
"""
HELLO = {"en/hello.email": "---\nsubject: Welcome {{ member.first_name }}\n---\n<p>Hi</p>\n"}


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_a_batch_of_sign_ups_becomes_members_and_few_full_email_requests(
    postgres_app: App, redis_url: str, sendgrid_sandbox: SendGridSandbox, tmp_path: Path
) -> None:
    # Given a journey that welcomes each new member by email, and a token for the shop
    app = postgres_app
    folder = journey_folder(tmp_path, {"welcome_now": WELCOME}, HELLO)
    app.settings = app.settings.model_copy(update={"journeys_dir": folder})
    publish(app, folder)
    stack = Stack.of(app, redis_url, tmp_path)
    # (no gathering delay: the emails leave together only because their events arrived so)
    gathering_off = {"EMAIL_BATCH_GATHER_MS": "0"}
    env = stack.environment(sendgrid=sendgrid_sandbox, **gathering_off)
    created = subprocess.run(
        [*loyalty_command(), "tokens", "create", "--name", "shop", "--scope", "events:write"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token = created.stdout.strip()
    events = [
        {
            "type": "member.enrolled",
            "member": f"s-{n}",
            "id": f"signup-{n}",
            "profile": {"email": f"s{n}@example.com", "first_name": "Ada", "email_consent": True},
        }
        for n in range(SIGN_UPS)
    ]
    port = free_port()

    # When the shop posts them in one request while two worker processes run
    with stack.processes("worker", sendgrid=sendgrid_sandbox, **gathering_off) as supervisor:
        supervisor.start("serve", [*loyalty_command(), "serve", "--port", str(port)])
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: answers(f"{base}/healthz"), "loyalty serve", logs=supervisor.logs)
        answer = httpx.post(
            f"{base}/api/v1/events",
            json={"events": events},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        assert answer.status_code == 202, answer.text
        assert answer.json()["stored"] == SIGN_UPS
        wait_for(
            lambda: message_states(app)["sent"] == SIGN_UPS,
            "every welcome email sent",
            timeout=420,
            logs=supervisor.logs,
        )

    # Then each member got the welcome once
    sends = [(r.status, json.loads(r.body)) for r in sendgrid_sandbox.requests("/v3/mail/send")]
    assert {status for status, _ in sends} == {202}
    addresses = Counter(
        to["email"] for _, body in sends for p in body["personalizations"] for to in p["to"]
    )
    assert addresses == Counter({f"s{n}@example.com": 1 for n in range(SIGN_UPS)})
    # And in a few requests: at most one per batch the events were queued in (one for each
    # of the eight worker threads), not one per sign-up
    assert len(sends) <= 8, [len(body["personalizations"]) for _, body in sends]
