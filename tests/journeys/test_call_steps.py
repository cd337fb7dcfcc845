"""Validating `http` and `crm_task` steps: endpoint names, member fields, task fields."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from automations.definition import Journey, Program, validate_paths
from automations.engine import FollowUpTask, HttpRequest, StepState, decide
from loyalty.clock import FrozenClock
from tests.conftest import START

from .factories import journey, lines

HEAD = """\
id: calls
name: Calls
trigger: {type: event, event: survey.answered}
entry: {every_time: true}
steps:
"""

PROGRAM = Program(http_endpoints=("helpdesk", "fulfilment"))


def problems_of(tmp_path: Path, steps: str, program: Program = PROGRAM) -> list[str]:
    path = journey(tmp_path, "calls", HEAD + steps)
    return lines(validate_paths([path], program=program))


def test_valid_steps_have_no_problems(tmp_path: Path) -> None:
    steps = """\
  - id: notify
    type: http
    endpoint: helpdesk
    member_fields: [email, attributes.vip]
    data: {score: "{{ event.score }}", retries: 2}
  - id: call
    type: crm_task
    subject: "Call {{ member.first_name }}"
    body: "NPS {{ event.score }}"
    due_in: 2d
    priority: high
    owner: {hubspot: "123"}
    crms: [hubspot]
"""
    assert problems_of(tmp_path, steps) == []


def test_an_unknown_endpoint_names_the_closest_configured_one(tmp_path: Path) -> None:
    steps = "  - {id: notify, type: http, endpoint: helpdsk}\n"
    assert problems_of(tmp_path, steps) == [
        f"{tmp_path}/calls.yaml:6:40: unknown http endpoint `helpdsk` (did you mean `helpdesk`?)"
    ]


def test_without_endpoints_the_hint_says_where_they_are_configured(tmp_path: Path) -> None:
    steps = "  - {id: notify, type: http, endpoint: helpdesk}\n"
    [problem] = problems_of(tmp_path, steps, Program(http_endpoints=()))
    assert "unknown http endpoint `helpdesk` (configure it in HTTP_ENDPOINTS" in problem


def test_a_stored_version_is_not_checked_against_the_endpoints_again() -> None:
    data = {
        "id": "calls",
        "name": "Calls",
        "trigger": {"type": "event", "event": "survey.answered"},
        "entry": {"every_time": True},
        "steps": [{"id": "notify", "type": "http", "endpoint": "gone"}],
    }
    assert Journey.model_validate(data).steps[0].type == "http"


def test_unknown_member_fields_and_task_values_are_errors(tmp_path: Path) -> None:
    steps = """\
  - id: notify
    type: http
    endpoint: helpdesk
    member_fields: [emial]
  - id: call
    type: crm_task
    subject: Call
    priority: urgent
    crms: [pipedrive]
"""
    found = problems_of(tmp_path, steps)
    assert any("unknown member field `emial` (did you mean `email`?)" in p for p in found)
    assert any(":13:15: `priority` cannot be 'urgent'" in p for p in found)
    assert any(":14:12: " in p and "pipedrive" in p for p in found)


def test_template_mistakes_in_task_texts_and_call_data_are_found(tmp_path: Path) -> None:
    steps = """\
  - id: notify
    type: http
    endpoint: helpdesk
    data: {who: "{{ member.frist_name }}"}
  - id: call
    type: crm_task
    subject: "NPS {{ event.scor }}"
"""
    found = problems_of(tmp_path, steps)
    assert len(found) == 2
    assert found[0].startswith(f"{tmp_path}/calls.yaml:9:") and "member.frist_name" in found[0]
    assert found[1].startswith(f"{tmp_path}/calls.yaml:12:") and "event.scor" in found[1]


def test_decisions_carry_what_the_steps_say() -> None:
    data = {
        "id": "calls",
        "name": "Calls",
        "trigger": {"type": "event", "event": "survey.answered"},
        "entry": {"every_time": True},
        "steps": [
            {"id": "notify", "type": "http", "endpoint": "helpdesk", "member_fields": ["email"]},
            {"id": "call", "type": "crm_task", "subject": "Call", "due_in": "3d"},
        ],
    }
    definition = Journey.model_validate(data)
    now = FrozenClock(START).now()
    state = StepState(member={"external_id": "m-1"}, zone="UTC", now=now)

    call = decide(definition, "notify", state)
    task = decide(definition, "call", state)

    assert call.actions == (HttpRequest("helpdesk", ("external_id", "email"), True, {}),)
    assert call.next_step == "call"
    [follow_up] = task.actions
    assert isinstance(follow_up, FollowUpTask)
    assert (follow_up.due_at, follow_up.priority, follow_up.crms) == (
        now + timedelta(days=3),
        "medium",
        ("hubspot", "salesforce"),
    )
    assert task.next_step == "end"
