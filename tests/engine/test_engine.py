"""The engine end to end: events enter journeys, steps run once, waits wake, goals convert."""

from __future__ import annotations

import json
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from automations.intake import emit
from automations.runtime import actors
from cli import main
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.event_types import EventInput
from loyalty.models import LedgerEntry, Member
from tests.engine.helpers import (
    enrollments,
    journey_folder,
    messages,
    published,
    send_event,
    tick,
    workers,
)
from tests.factories import make_member

THANKS = """
id: thanks
name: Thanks for ordering
status: active
locales: [en, pl]
trigger:
  type: event
  event: order.completed
  conditions: {field: event.total, gte: 20}
entry: {every_time: true}
steps:
  - id: bonus
    type: award_points
    amount: {bronze: 10, silver: 20, gold: 50}
    reason: Thank-you bonus
  - id: email
    type: send_email
    template: thanks
  - id: pause
    type: wait
    duration: 3d
  - id: text
    type: send_sms
    template: thanks
"""
TEMPLATES = {
    "en/thanks.email": """---
subject: "Thanks, {{ member.first_name }}"
preheader: "{{ award.points }} points for order {{ event.order_id }}"
---
<p>You got {{ award.points }} points. Balance: {{ member.points_balance }}.</p>
""",
    "pl/thanks.email": """---
subject: "Dziękujemy, {{ member.first_name }}"
---
<p>Masz {{ award.points }} pkt.</p>
""",
    "en/thanks.sms": "Thanks {{ member.first_name }}! {{ award.points }} pts. STOP to opt out",
    "pl/thanks.sms": "Dzięki {{ member.first_name }}! {{ award.points }} pkt. STOP=rezygnacja",
}


def read_eml(path: Path) -> EmailMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(parsed, EmailMessage)
    return parsed


def order(member: str, order_id: str, total: str = "30") -> EventInput:
    return EventInput(
        "order.completed",
        member,
        id=f"e-{order_id}",
        data={"order_id": order_id, "total": total, "currency": "EUR"},
    )


def given_thanks(app: App, tmp_path: Path) -> None:
    published(app, journey_folder(tmp_path, {"thanks": THANKS}, TEMPLATES))


def test_an_event_runs_the_steps_and_a_wait_wakes_later(
    app: App, tmp_path: Path, clock: FrozenClock
) -> None:
    given_thanks(app, tmp_path)
    make_member(
        app,
        external_id="m-1",
        first_name="Anna",
        email="anna@example.com",
        phone="+48601234567",
        email_consent=True,
        sms_consent=True,
        locale="pl",
    )
    send_event(app, order("m-1", "1001"))

    [enrollment] = enrollments(app)
    assert (enrollment.state, enrollment.current_step) == ("waiting", "pause")
    assert enrollment.next_run_at == clock.now() + timedelta(days=3)
    [email] = messages(app)
    assert (email.channel, email.state, email.locale) == ("email", "sent", "pl")
    mail = read_eml(next(app.settings.outbox_dir.rglob("*.eml")))
    assert mail["Subject"] == "Dziękujemy, Anna"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = mail.get_body(("html",))
    assert html is not None and "Masz 10 pkt." in html.get_content()
    with app.database.sessions() as session:
        bonus = session.scalar(select(LedgerEntry).where(LedgerEntry.kind == "bonus"))
        assert bonus is not None and bonus.delta == 10
        assert bonus.idempotency_key == f"enrollment:{enrollment.id}:bonus"

    assert tick(app) == 0  # not yet
    clock.advance(timedelta(days=3))
    assert tick(app) == 1
    [enrollment] = enrollments(app)
    assert (enrollment.state, enrollment.exit_reason) == ("completed", None)
    sms = messages(app)[1]
    assert (sms.channel, sms.state, sms.segments) == ("sms", "sent", 1)
    text = next(app.settings.outbox_dir.rglob("*.json")).read_text(encoding="utf-8")
    assert "Dzięki Anna! 10 pkt. STOP=rezygnacja" in text


def test_an_outbox_without_files_records_the_sends_it_would_have_written(
    app: App, tmp_path: Path, clock: FrozenClock
) -> None:
    # Given the local outbox set to write no files (as the simulator's is)
    quiet = App(app.settings.model_copy(update={"outbox_files": False}), app.database, clock)
    given_thanks(quiet, tmp_path)
    make_member(
        quiet,
        external_id="m-1",
        email="anna@example.com",
        phone="+48601234567",
        email_consent=True,
        sms_consent=True,
    )
    # When an order sends the email, and the wait's end the SMS
    send_event(quiet, order("m-1", "1001"))
    clock.advance(timedelta(days=3))
    assert tick(quiet) == 1
    # Then both are sent under the names their files would have had, and no file is written
    email, sms = messages(quiet)
    assert (email.state, email.provider_id) == ("sent", f"message-{email.id}.eml")
    assert (sms.state, sms.provider_id) == ("sent", f"message-{sms.id}.json")
    assert not quiet.settings.outbox_dir.exists() or not any(quiet.settings.outbox_dir.rglob("*"))


def test_replayed_messages_and_ticks_change_nothing(app: App, tmp_path: Path) -> None:
    given_thanks(app, tmp_path)
    make_member(app, external_id="m-1", email="a@example.com", email_consent=True)
    send_event(app, order("m-1", "1001"))
    [enrollment] = enrollments(app)
    with workers(app):
        for _ in range(3):
            actors.send("run_enrollment", enrollment.id)
            actors.send("deliver_message", messages(app)[0].id)
            actors.send("process_event", 1)
    assert len(enrollments(app)) == 1
    assert len(messages(app)) == 1
    assert len(list(app.settings.outbox_dir.rglob("*.eml"))) == 1
    with app.database.sessions() as session:
        assert session.scalar(select(Member.points_balance)) == 30 + 10


def test_trigger_conditions_and_entry_rules(app: App, tmp_path: Path) -> None:
    given_thanks(app, tmp_path)
    make_member(app, external_id="m-1", email="a@example.com", email_consent=True)
    send_event(app, order("m-1", "1", total="19.99"))  # below the trigger's condition
    assert enrollments(app) == []
    send_event(app, order("m-1", "2"))
    send_event(app, order("m-1", "3"))
    assert [e.occurrence for e in enrollments(app)] == ["order:2", "order:3"]


def test_no_consent_suppresses_and_says_why(app: App, tmp_path: Path) -> None:
    given_thanks(app, tmp_path)
    make_member(app, external_id="m-1", email="a@example.com", email_consent=False)
    send_event(app, order("m-1", "1"))
    [email] = messages(app)
    assert (email.state, email.error) == ("suppressed", "no_consent")
    assert list(app.settings.outbox_dir.rglob("*.eml")) == []


BRANCHES = """
id: vip_check
name: VIP check
status: active
trigger: {type: event, event: order.completed}
entry: {once: true}
goal: {event: reward.redeemed, within: 7d}
steps:
  - id: big_spender
    type: branch
    if: {field: total_spent, gte: 100}
    then: vip_mail
  - id: regular_mail
    type: send_email
    template: regular
    next: wait_for_reward
  - id: vip_mail
    type: send_email
    template: vip
  - id: wait_for_reward
    type: wait
    until_event: {event: reward.redeemed, timeout: 2d}
    on_event: thanks
    on_timeout: nudge
  - id: thanks
    type: send_email
    template: regular
    next: end
  - id: nudge
    type: send_email
    template: vip
"""


def test_branches_waits_for_events_and_goals(app: App, tmp_path: Path, clock: FrozenClock) -> None:
    body = "---\nsubject: s\n---\n<p>{{ member.external_id }}</p>\n"
    published(
        app,
        journey_folder(
            tmp_path, {"vip_check": BRANCHES}, {"en/regular.email": body, "en/vip.email": body}
        ),
    )
    for member in ("big", "small"):
        make_member(app, external_id=member, email=f"{member}@example.com", email_consent=True)
    send_event(app, order("big", "1", total="150"))
    send_event(app, order("small", "2", total="30"))
    send_event(app, order("small", "3", total="30"))  # `once`: no second enrollment
    by_member = {m.member_id: m for m in messages(app)}
    assert len(by_member) == 2
    assert sorted(m.template or "" for m in messages(app)) == ["regular", "vip"]

    # The redemption arrives for "big" within the wait: goal reached, the journey converts.
    with app.database.sessions() as session:
        big = session.scalar(select(Member).where(Member.external_id == "big"))
    assert big is not None
    send_event(app, EventInput("reward.redeemed", "big", id="r-1", data={"points": 100}))
    states = {e.member_id: e for e in enrollments(app)}
    assert (states[big.id].state, states[big.id].exit_reason) == ("converted", "goal")
    assert states[big.id].converted_at is not None
    listed = CliRunner().invoke(
        main, ["journeys", "list", "--json"], env={"DATABASE_URL": app.database.url}
    )
    [row] = json.loads(listed.stdout)
    assert (row["entries"], row["conversions"], row["active_enrollments"]) == (2, 1, 1)

    # "small" times out and is nudged.
    clock.advance(timedelta(days=2))
    tick(app)
    small = next(e for e in enrollments(app) if e.member_id != big.id)
    assert small.state == "completed"
    assert [m.step_id for m in messages(app) if m.member_id == small.member_id] == [
        "regular_mail",
        "nudge",
    ]


def test_a_template_that_fails_fails_only_its_message(app: App, tmp_path: Path) -> None:
    # Valid Liquid that fails only with this data: the payload has no `items`.
    broken = "---\nsubject: s\n---\n<p>{{ event.items.first.sku }}</p>\n"
    journey = THANKS.replace("  - id: pause\n    type: wait\n    duration: 3d\n", "")
    published(
        app, journey_folder(tmp_path, {"thanks": journey}, {**TEMPLATES, "en/thanks.email": broken})
    )
    make_member(
        app,
        external_id="m-1",
        email="a@example.com",
        phone="+48601234567",
        email_consent=True,
        sms_consent=True,
    )
    with workers(app):
        emit(app, order("m-1", "1"))
    email, sms = messages(app)
    assert email.state == "failed"
    assert email.error is not None and "render:" in email.error and "items" in email.error
    assert sms.state == "sent"
    assert enrollments(app)[0].state == "completed"


def test_update_crm_values_are_filled_in_when_the_step_runs(app: App, tmp_path: Path) -> None:
    journey = """
id: crm_note
name: CRM note
status: active
trigger: {type: event, event: order.completed}
entry: {every_time: true}
steps:
  - {id: bonus, type: award_points, amount: 40, reason: Thanks}
  - id: note
    type: update_crm
    properties:
      loyalty_last_bonus: "{{ award.points }}"
      loyalty_last_order: "{{ event.order_id }}"
      loyalty_flag: true
"""
    published(app, journey_folder(tmp_path, {"crm_note": journey}, {}))
    make_member(app, external_id="m-1")
    send_event(app, order("m-1", "A-7"))
    [crm] = messages(app)
    assert (crm.channel, crm.state) == ("crm", "pending")
    assert crm.decisions["properties"] == {
        "loyalty_last_bonus": "40",
        "loyalty_last_order": "A-7",
        "loyalty_flag": True,
    }


def test_an_event_wait_may_branch_straight_to_the_end(app: App, tmp_path: Path) -> None:
    journey = """
id: ask
name: Ask
status: active
trigger: {type: event, event: member.enrolled}
entry: {once: true}
steps:
  - id: await_order
    type: wait
    until_event: {event: order.completed, timeout: 3d}
    on_event: end
    on_timeout: nudge
  - {id: nudge, type: send_email, template: nudge}
"""
    published(
        app,
        journey_folder(
            tmp_path, {"ask": journey}, {"en/nudge.email": "---\nsubject: s\n---\n<p>x</p>\n"}
        ),
    )
    make_member(app, external_id="m-1", email="a@example.com", email_consent=True)
    send_event(app, EventInput("member.enrolled", "m-1", id="1"))
    send_event(app, order("m-1", "1"))
    [enrollment] = enrollments(app)
    assert (enrollment.state, enrollment.exit_reason) == ("completed", None)
    assert messages(app) == []
