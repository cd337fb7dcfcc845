"""Journey `http` and `crm_task` steps against the webhook sink and the CRM emulators."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from click.testing import CliRunner

from automations.deliveries import deliver, retry_unknown
from automations.runtime.dead_letters import list_dead_letters
from channels.delivery import settle_stale
from channels.http_calls import SIGNATURE_HEADER, verify
from channels.retries import retry_failed
from cli import main
from crm_sync.adapters import make_adapter
from crm_sync.runs import run_push
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.erasure import erase_member
from loyalty.event_types import EventInput
from loyalty.models import Member, Message
from loyalty.pacing import forget_local_windows
from loyalty.states import MessageState
from sandbox.hubspot import HubSpotSandbox
from sandbox.salesforce import SalesforceSandbox
from sandbox.sink import WebhookSink
from tests.conftest import make_settings
from tests.crm.support import crm_app, salesforce_fields
from tests.engine.helpers import journey_folder, messages, published, send_event
from tests.factories import make_member

SECRET = "sink-secret-0123456789"

DETRACTOR = """
id: detractor
name: Detractor follow-up
status: active
trigger: {type: event, event: survey.answered}
entry: {every_time: true}
steps:
  - id: low_score
    type: branch
    if: {field: event.score, lte: 6}
    then: {first}
    else: end
{steps}
"""

HTTP_STEP = """
  - id: notify
    type: http
    endpoint: helpdesk
    member_fields: [email, first_name, tier]
    data:
      reason: "NPS {{ event.score }} from {{ member.first_name }}"
      priority: 2
"""

TASK_STEP = """
  - id: follow_up
    type: crm_task
    subject: "Call {{ member.first_name }} (NPS {{ event.score }})"
    body: "Ask what went wrong."
    due_in: 2d
    priority: high
    owner: {salesforce: 005000000000001AAA}
"""


def detractor_journey(tmp_path: Path, *steps: str) -> Path:
    first = "notify" if steps[0] is HTTP_STEP else "follow_up"
    text = DETRACTOR.replace("{first}", first).replace("{steps}", "".join(steps).strip("\n"))
    return journey_folder(tmp_path, {"detractor": text}, {})


def answered(member: str, score: int, event_id: str = "s-1") -> EventInput:
    return EventInput("survey.answered", member, id=event_id, data={"kind": "nps", "score": score})


def with_settings(app: App, **values: Any) -> App:
    settings = app.settings.model_copy(update=values)
    return App(settings, app.database, app.clock, app.pacers)


def sink_app(app: App, sink: WebhookSink, **values: Any) -> App:
    endpoint = {"url": sink.url("/hooks/loyalty"), "secret": SECRET, "timeout_seconds": 5}
    settings = make_settings(
        app.database,
        outbox_dir=app.settings.outbox_dir,
        http_endpoints={"helpdesk": endpoint},
        send_retry_base_seconds=1,
        send_retry_max_seconds=2,
        **values,
    )
    return App(settings, app.database, app.clock, app.pacers)


def only_row(app: App) -> Message:
    [row] = messages(app)
    return row


# -- http ----------------------------------------------------------------------------------------


def test_an_http_step_posts_once_signed_and_retries_a_500_under_the_same_key(
    app: App, clock: FrozenClock, webhook_sink: WebhookSink, tmp_path: Path
) -> None:
    app = sink_app(app, webhook_sink)
    make_member(app, external_id="m-1", email="ann@example.com", first_name="Ann")
    published(app, detractor_journey(tmp_path, HTTP_STEP))
    webhook_sink.answer_next(500)

    send_event(app, answered("m-1", 3))

    # The first try met a 500: back to pending, due after the backoff
    row = only_row(app)
    assert (row.channel, row.state, row.attempts) == ("http", MessageState.PENDING, 1)
    assert row.error is not None and row.error.startswith("HTTP 500")
    assert deliver(app, row.id) is None  # not due yet
    clock.advance(timedelta(seconds=3))
    assert deliver(app, row.id) == MessageState.SENT
    assert deliver(app, row.id) is None  # a duplicate queue message does nothing

    posts = webhook_sink.requests(path="/hooks/loyalty", method="POST")
    assert [p.status for p in posts] == [500, 200]
    first, second = posts
    assert first.body == second.body
    key = f"enrollment:{row.enrollment_id}:notify"
    assert {p.headers["idempotency-key"] for p in posts} == {key}
    assert verify(SECRET, second.body, second.headers[SIGNATURE_HEADER.lower()])
    assert not verify("another-secret-0000", second.body, second.headers[SIGNATURE_HEADER.lower()])
    body = second.json()
    assert body["idempotency_key"] == key
    assert body["journey"] == {"id": "detractor", "name": "Detractor follow-up"}
    assert body["step"] == "notify"
    assert body["member"] == {
        "external_id": "m-1",
        "email": "ann@example.com",
        "first_name": "Ann",
        "tier": "bronze",
    }
    assert body["event"] == {"type": "survey.answered", "data": {"kind": "nps", "score": 3}}
    assert body["data"] == {"reason": "NPS 3 from Ann", "priority": 2}
    row = only_row(app)
    assert (row.state, row.attempts, row.provider_id) == (MessageState.SENT, 2, "http:200")


def test_a_4xx_fails_the_http_step_for_good_with_its_status(
    app: App, webhook_sink: WebhookSink, tmp_path: Path
) -> None:
    app = sink_app(app, webhook_sink)
    make_member(app, external_id="m-1")
    published(app, detractor_journey(tmp_path, HTTP_STEP))
    webhook_sink.answer_next(422)

    send_event(app, answered("m-1", 2))

    row = only_row(app)
    assert (row.state, row.attempts) == (MessageState.FAILED, 1)
    assert row.error is not None and row.error.startswith("HTTP 422")
    assert len(webhook_sink.requests(method="POST")) == 1


def test_a_call_left_unknown_by_a_dead_worker_is_sent_again_under_its_key(
    app: App, clock: FrozenClock, webhook_sink: WebhookSink, tmp_path: Path
) -> None:
    app = sink_app(app, webhook_sink)
    make_member(app, external_id="m-1")
    published(app, detractor_journey(tmp_path, HTTP_STEP))
    webhook_sink.answer_next(503)
    send_event(app, answered("m-1", 2))
    row = only_row(app)
    # As a worker that died after its request left would leave it
    with app.database.transaction() as session:
        stored = session.get(Message, row.id)
        assert stored is not None
        stored.state, stored.request_at = MessageState.CLAIMED, clock.now()
    clock.advance(timedelta(minutes=11))
    settle_stale(app)
    assert only_row(app).state == MessageState.UNKNOWN

    assert retry_unknown(app) == [row.id]
    assert deliver(app, row.id) == MessageState.SENT
    posts = webhook_sink.requests(method="POST")
    assert [p.status for p in posts] == [503, 200]
    assert len({p.headers["idempotency-key"] for p in posts}) == 1


def test_an_unconfigured_endpoint_fails_the_step_with_a_reason(
    app: App, webhook_sink: WebhookSink, tmp_path: Path
) -> None:
    configured = sink_app(app, webhook_sink)
    make_member(app, external_id="m-1")
    published(configured, detractor_journey(tmp_path, HTTP_STEP))

    send_event(with_settings(configured, http_endpoints={}), answered("m-1", 1))

    row = only_row(app)
    assert row.state == MessageState.FAILED
    assert row.error is not None and "endpoint `helpdesk` is not in HTTP_ENDPOINTS" in row.error
    assert webhook_sink.requests(method="POST") == []

    # Once the endpoint is configured, replaying the dead letter sends it
    [dead] = list_dead_letters(app.database)
    endpoint = configured.settings.http_endpoints["helpdesk"]
    environment = {
        "DATABASE_URL": app.database.url,
        "OUTBOX_DIR": str(app.settings.outbox_dir),
        "HTTP_ENDPOINTS": json.dumps({"helpdesk": {"url": str(endpoint.url), "secret": SECRET}}),
    }
    result = CliRunner().invoke(main, ["dlq", "replay", str(dead.id)], env=environment)
    assert result.exit_code == 0, result.output
    assert only_row(app).state == MessageState.SENT
    assert [p.status for p in webhook_sink.requests(method="POST")] == [200]


# -- crm_task ------------------------------------------------------------------------------------


@pytest.fixture
def crms(app: App, hubspot_sandbox: HubSpotSandbox, salesforce_sandbox: SalesforceSandbox) -> App:
    forget_local_windows()
    salesforce_sandbox.set_custom_fields(salesforce_fields())
    linked = crm_app(app, hubspot_sandbox, salesforce_sandbox, send_retry_base_seconds=1)
    make_adapter(linked, "hubspot").ensure_schema()
    return linked


def test_a_crm_task_opens_one_task_per_crm_on_the_members_contact(
    crms: App,
    hubspot_sandbox: HubSpotSandbox,
    salesforce_sandbox: SalesforceSandbox,
    tmp_path: Path,
) -> None:
    make_member(crms, external_id="m-1", email="ann@example.com", first_name="Ann", last_name="Lee")
    run_push(crms, "hubspot")
    run_push(crms, "salesforce")
    published(crms, detractor_journey(tmp_path, TASK_STEP))

    send_event(crms, answered("m-1", 4))

    row = only_row(crms)
    assert (row.channel, row.state, row.error) == ("crm_task", MessageState.SENT, None)
    [hs_contact] = hubspot_sandbox.contacts()
    [hs_task] = hubspot_sandbox.tasks()
    assert hs_task["contacts"] == [hs_contact["id"]]
    props = hs_task["properties"]
    assert props["hs_task_subject"] == "Call Ann (NPS 4)"
    assert props["hs_task_body"].startswith("Ask what went wrong.\n\nLoyalty reference: lj-")
    assert (props["hs_task_priority"], props["hs_task_status"]) == ("HIGH", "NOT_STARTED")
    assert props["hs_timestamp"].startswith(
        (crms.clock.now() + timedelta(days=2)).date().isoformat()
    )
    assert "hubspot_owner_id" not in props
    [sf_contact] = salesforce_sandbox.contacts()
    [sf_task] = salesforce_sandbox.tasks()
    assert sf_task["WhoId"] == sf_contact["Id"]
    assert (sf_task["Subject"], sf_task["Priority"], sf_task["Status"]) == (
        "Call Ann (NPS 4)",
        "High",
        "Not Started",
    )
    assert sf_task["OwnerId"] == "005000000000001AAA"
    assert sf_task["ActivityDate"] == (crms.clock.now() + timedelta(days=2)).date().isoformat()
    assert sf_task["Description"] == props["hs_task_body"]
    assert row.decisions["tasks"] == {
        "hubspot": {"id": hs_task["id"], "contact": hs_contact["id"]},
        "salesforce": {"id": sf_task["Id"], "contact": sf_contact["Id"]},
    }


def test_a_lost_answer_does_not_open_a_second_task(
    crms: App,
    clock: FrozenClock,
    hubspot_sandbox: HubSpotSandbox,
    salesforce_sandbox: SalesforceSandbox,
    tmp_path: Path,
) -> None:
    make_member(crms, external_id="m-1", first_name="Ann", last_name="Lee")
    run_push(crms, "hubspot")
    run_push(crms, "salesforce")
    published(crms, detractor_journey(tmp_path, TASK_STEP))
    # HubSpot opens the task but its answer never arrives; Salesforce answers 503
    hubspot_sandbox.set_faults(drop_rate=1.0, drop_hold_s=0.5)
    salesforce_sandbox.set_faults(error_rate=1.0, error_statuses=(503,))

    send_event(crms, answered("m-1", 5))

    row = only_row(crms)
    assert (row.state, row.attempts) == (MessageState.PENDING, 1)
    assert len(hubspot_sandbox.tasks()) == 1 and salesforce_sandbox.tasks() == []
    hubspot_sandbox.set_faults(drop_rate=0.0)
    salesforce_sandbox.set_faults(error_rate=0.0)
    clock.advance(timedelta(seconds=3))

    assert deliver(crms, row.id) == MessageState.SENT

    [hs_task] = hubspot_sandbox.tasks()
    [sf_task] = salesforce_sandbox.tasks()
    searches = hubspot_sandbox.requests(path="/crm/v3/objects/tasks/search")
    assert len(searches) == 1
    assert only_row(crms).decisions["tasks"]["hubspot"]["id"] == hs_task["id"]
    assert only_row(crms).decisions["tasks"]["salesforce"]["id"] == sf_task["Id"]


def test_a_crm_task_with_no_crm_configured_records_why(app: App, tmp_path: Path) -> None:
    make_member(app, external_id="m-1")
    published(app, detractor_journey(tmp_path, TASK_STEP))

    send_event(app, answered("m-1", 0))

    row = only_row(app)
    assert row.state == MessageState.SUPPRESSED
    assert row.error == (
        "no CRM could take the task: hubspot is not configured; salesforce is not configured"
    )


def test_a_member_without_a_contact_is_waited_for_then_skipped(
    crms: App, clock: FrozenClock, hubspot_sandbox: HubSpotSandbox, tmp_path: Path
) -> None:
    app = with_settings(crms, send_max_attempts=2)
    make_member(app, external_id="m-1")
    run_push(app, "hubspot")  # linked in HubSpot only
    published(app, detractor_journey(tmp_path, TASK_STEP))

    send_event(app, answered("m-1", 1))

    row = only_row(app)
    assert row.state == MessageState.PENDING
    assert row.error == "waiting for the member's contact in salesforce"
    assert len(hubspot_sandbox.tasks()) == 1
    clock.advance(timedelta(seconds=3))
    assert deliver(app, row.id) == MessageState.SENT
    row = only_row(app)
    assert row.error == "the member has no salesforce contact (not pushed yet)"
    assert len(hubspot_sandbox.tasks()) == 1


def test_journey_calls_local_writes_the_outbox_and_calls_nothing(
    app: App, webhook_sink: WebhookSink, tmp_path: Path
) -> None:
    app = sink_app(app, webhook_sink, journey_calls_local=True)
    make_member(app, external_id="m-1")
    published(app, detractor_journey(tmp_path, HTTP_STEP, TASK_STEP))

    send_event(app, answered("m-1", 6))

    call, task = messages(app)
    assert (call.state, task.state) == (MessageState.SENT, MessageState.SENT)
    assert webhook_sink.requests() == []
    written = json.loads((app.settings.outbox_dir / "http" / f"{call.id}.json").read_text())
    assert written["idempotency_key"] == f"enrollment:{call.enrollment_id}:notify"
    tasks = json.loads((app.settings.outbox_dir / "crm_tasks" / f"{task.id}.json").read_text())
    assert sorted(tasks) == ["hubspot", "salesforce"]


def test_erasure_stops_queued_calls_and_blanks_what_was_rendered(
    app: App, webhook_sink: WebhookSink, tmp_path: Path
) -> None:
    app = sink_app(app, webhook_sink)
    member = make_member(app, external_id="m-1", email="ann@example.com", first_name="Annabel")
    published(app, detractor_journey(tmp_path, HTTP_STEP, TASK_STEP))
    webhook_sink.answer_next(503)  # the call waits for its retry
    send_event(app, answered("m-1", 6))

    with app.database.transaction() as session:
        stored = session.get(Member, member.id)
        assert stored is not None
        erase_member(session, stored, now=app.clock.now())

    call, task = messages(app)
    assert (call.state, call.error) == (MessageState.SUPPRESSED, "erased")
    assert call.decisions["body"] == "{}"
    assert (task.decisions["task"]["subject"], task.decisions["task"]["body"]) == ("", "")
    assert "Annabel" not in json.dumps([call.decisions, task.decisions])


def test_the_simulator_shows_both_steps_and_calls_nothing(
    app: App, webhook_sink: WebhookSink, hubspot_sandbox: HubSpotSandbox, tmp_path: Path
) -> None:
    folder = detractor_journey(tmp_path, HTTP_STEP, TASK_STEP)
    members = tmp_path / "members.csv"
    members.write_text("external_id,first_name\nann,Ann\n")
    events = tmp_path / "events.jsonl"
    answer = {
        "type": "survey.answered",
        "member": "ann",
        "id": "s-1",
        "at": "2026-04-01T09:00:00Z",
        "data": {"kind": "nps", "score": 2},
    }
    events.write_text(json.dumps(answer) + "\n")
    endpoint = {"url": webhook_sink.url("/hooks/loyalty"), "secret": SECRET}
    environment = {
        "DATABASE_URL": app.database.url,
        "JOURNEYS_DIR": str(folder),
        "OUTBOX_DIR": str(app.settings.outbox_dir),
        "HTTP_ENDPOINTS": json.dumps({"helpdesk": endpoint}),
        "HUBSPOT_ACCESS_TOKEN": hubspot_sandbox.access_token,
        "HUBSPOT_BASE_URL": hubspot_sandbox.base_url,
        "LOG_LEVEL": "ERROR",
    }
    arguments = ["journeys", "simulate", "--from", "2026-04-01", "--to", "2026-04-02"]
    arguments += ["--members", str(members), "--events", str(events), "--json"]

    result = CliRunner().invoke(main, arguments, env=environment)

    assert result.exit_code == 0, result.output
    timeline = json.loads(result.stdout)["timeline"]
    steps = [(r["action"], r["step"], r.get("state")) for r in timeline if r["member"] == "ann"]
    assert steps == [
        ("enter", "", None),
        ("http", "notify", "sent"),
        ("crm_task", "follow_up", "sent"),
        ("exit", "follow_up", None),
    ]
    call = next(r for r in timeline if r["action"] == "http")
    task = next(r for r in timeline if r["action"] == "crm_task")
    assert (call["endpoint"], task["subject"]) == ("helpdesk", "Call Ann (NPS 2)")
    assert webhook_sink.requests() == []
    assert hubspot_sandbox.requests() == []


def test_a_replayed_task_looks_before_opening_where_an_answer_was_lost(
    crms: App, salesforce_sandbox: SalesforceSandbox, tmp_path: Path
) -> None:
    app = with_settings(crms, send_max_attempts=1)
    make_member(app, external_id="m-1", first_name="Ann", last_name="Lee")
    run_push(app, "salesforce")
    published(
        app,
        detractor_journey(tmp_path, TASK_STEP.replace("owner:", "crms: [salesforce]\n    owner:")),
    )
    salesforce_sandbox.set_faults(drop_rate=1.0, drop_hold_s=0.5)

    send_event(app, answered("m-1", 5))

    row = only_row(app)
    assert row.state == MessageState.FAILED  # out of attempts, with a dead letter
    assert len(salesforce_sandbox.tasks()) == 1  # the task was opened; its answer was lost
    salesforce_sandbox.set_faults(drop_rate=0.0)
    with app.database.transaction() as session:
        assert retry_failed(session, row.id, now=app.clock.now())

    assert deliver(app, row.id) == MessageState.SENT

    [task] = salesforce_sandbox.tasks()
    assert only_row(app).decisions["tasks"]["salesforce"]["id"] == task["Id"]
    [query] = salesforce_sandbox.requests(path="/services/data/v59.0/query")
    assert parse_qs(query.query)["q"][0].startswith("SELECT Id, Description FROM Task WHERE")
