"""The production shape: `loyalty worker` and `loyalty scheduler` on PostgreSQL and Redis run
a detractor follow-up (`http`, then `crm_task`) against the sink and the CRM emulators."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import select

from bench.soak_processes import Supervisor, loyalty_command
from channels.http_calls import SIGNATURE_HEADER, verify
from loyalty.app import App
from loyalty.models import CrmLink, Enrollment, Message
from loyalty.states import EnrollmentState, MessageState
from sandbox.hubspot import HubSpotSandbox
from sandbox.salesforce import SalesforceSandbox
from sandbox.sink import WebhookSink
from tests.conftest import REDIS_URL
from tests.crm.support import salesforce_fields
from tests.processes import wait_for

SECRET = "production-sink-secret-0001"

JOURNEY = """
id: detractor
name: Detractor follow-up
status: active
trigger: {type: event, event: survey.answered}
entry: {every_time: true}
steps:
  - id: low_score
    type: branch
    if: {field: event.score, lte: 6}
    then: notify
    else: end
  - id: notify
    type: http
    endpoint: helpdesk
    member_fields: [email, first_name]
    data: {reason: "NPS {{ event.score }}"}
  - id: follow_up
    type: crm_task
    subject: "Call {{ member.first_name }} about NPS {{ event.score }}"
    body: Ask what went wrong.
    due_in: 3d
    priority: high
"""


def rows(app: App) -> dict[str, Message]:
    with app.database.sessions() as session:
        return {m.channel: m for m in session.scalars(select(Message))}


def settled(app: App) -> bool:
    found = rows(app)
    return len(found) == 2 and all(
        m.state in (MessageState.SENT, MessageState.FAILED, MessageState.SUPPRESSED)
        for m in found.values()
    )


@pytest.mark.integration
def test_worker_and_scheduler_post_once_and_open_one_task_per_crm(
    postgres_app: App,
    redis_url: str,
    webhook_sink: WebhookSink,
    hubspot_sandbox: HubSpotSandbox,
    salesforce_sandbox: SalesforceSandbox,
    tmp_path: Path,
) -> None:
    salesforce_sandbox.set_custom_fields(salesforce_fields())
    database = postgres_app.database
    folder = tmp_path / "journeys"
    folder.mkdir()
    (folder / "detractor.yaml").write_text(textwrap.dedent(JOURNEY).lstrip(), encoding="utf-8")
    endpoint = {"url": webhook_sink.url("/hooks/loyalty"), "secret": SECRET}
    env = {
        **os.environ,
        "DATABASE_URL": database.url,
        "REDIS_URL": REDIS_URL,
        "JOURNEYS_DIR": str(folder),
        "OUTBOX_DIR": str(tmp_path / "outbox"),
        "HTTP_ENDPOINTS": json.dumps({"helpdesk": endpoint}),
        "HUBSPOT_ACCESS_TOKEN": hubspot_sandbox.access_token,
        "HUBSPOT_BASE_URL": hubspot_sandbox.base_url,
        "SALESFORCE_INSTANCE_URL": salesforce_sandbox.base_url,
        "SALESFORCE_ACCESS_TOKEN": salesforce_sandbox.access_token,
        "SALESFORCE_CA_BUNDLE": str(salesforce_sandbox.ca_file),
        "SEND_RETRY_BASE_SECONDS": "1",
        "SEND_RETRY_MAX_SECONDS": "2",
        "EVENT_RELAY_AFTER_SECONDS": "1",
        "SCHEDULER_TICK_SECONDS": "outbox_relay:1,due_enrollments:1",
        "RETRY_MIN_BACKOFF_MS": "10",
        "LOG_LEVEL": "INFO",
    }
    loyalty = loyalty_command()

    def run(*args: str) -> None:
        subprocess.run([*loyalty, *args], env=env, check=True, capture_output=True)

    # Given a member whose contacts exist in both CRMs, and the published journey
    members = tmp_path / "members.csv"
    members.write_text("external_id,email,first_name,last_name\nm-1,ann@example.com,Ann,Lee\n")
    run("members", "import", str(members))
    run("crm", "setup", "--crm", "hubspot")
    run("crm", "push", "--crm", "hubspot")
    run("crm", "push", "--crm", "salesforce")
    run("journeys", "publish")
    with database.sessions() as session:
        links = {link.crm: link.crm_id for link in session.scalars(select(CrmLink))}
    assert set(links) == {"hubspot", "salesforce"} and all(links.values())
    # ... and an endpoint whose first answer is a 500
    webhook_sink.answer_next(500)

    supervisor = Supervisor(env, tmp_path, tmp_path)
    try:
        supervisor.start("worker", [*loyalty, "worker", "--processes", "1", "--threads", "2"])
        supervisor.start("scheduler", [*loyalty, "scheduler"])
        # When a detractor answers the survey
        run(
            "events",
            "emit",
            "survey.answered",
            "--member",
            "m-1",
            "--id",
            "survey-1",
            "--data",
            '{"kind": "nps", "score": 3}',
        )
        wait_for(lambda: settled(postgres_app), "the http call and the CRM tasks", logs=tmp_path)
    finally:
        supervisor.stop_all()

    # Then the endpoint got one accepted POST, signed, after the 500, under one key
    posts = webhook_sink.requests(path="/hooks/loyalty", method="POST")
    assert [p.status for p in posts] == [500, 200]
    accepted = posts[-1]
    assert verify(SECRET, accepted.body, accepted.headers[SIGNATURE_HEADER.lower()])
    assert posts[0].body == accepted.body
    found = rows(postgres_app)
    call, task = found["http"], found["crm_task"]
    key = f"enrollment:{call.enrollment_id}:notify"
    assert {p.headers["idempotency-key"] for p in posts} == {key}
    body = accepted.json()
    assert body["member"] == {"external_id": "m-1", "email": "ann@example.com", "first_name": "Ann"}
    assert body["data"] == {"reason": "NPS 3"}
    assert (call.state, call.attempts, call.provider_id) == (MessageState.SENT, 2, "http:200")

    # ... and each CRM holds exactly one task, on the member's contact
    [hs_task] = hubspot_sandbox.tasks()
    assert hs_task["contacts"] == [links["hubspot"]]
    assert hs_task["properties"]["hs_task_subject"] == "Call Ann about NPS 3"
    assert hs_task["properties"]["hs_task_priority"] == "HIGH"
    [sf_task] = salesforce_sandbox.tasks()
    assert sf_task["WhoId"] == links["salesforce"]
    assert (sf_task["Subject"], sf_task["Priority"]) == ("Call Ann about NPS 3", "High")
    assert task.state == MessageState.SENT
    assert task.decisions["tasks"] == {
        "hubspot": {"id": hs_task["id"], "contact": links["hubspot"]},
        "salesforce": {"id": sf_task["Id"], "contact": links["salesforce"]},
    }
    with database.sessions() as session:
        [enrollment] = session.scalars(select(Enrollment))
    assert enrollment.state == EnrollmentState.COMPLETED

    logs = "".join(path.read_text() for path in tmp_path.glob("*.log"))
    assert SECRET not in logs and "ann@example.com" not in logs
    assert "Traceback" not in logs
