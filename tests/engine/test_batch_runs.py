"""Enrollments queued together run together: one transaction for the batch.

A batch of woken enrollments commits once, however many members it holds; the emails
its members' steps make are queued as one delivery batch that needs one delivery, and
leave in one SendGrid request. An enrollment whose member another worker holds is not
waited for: it runs on its own after the batch.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import select

from automations import runtime
from automations.intake import queue_events, store_batch
from automations.runner_batches import run_enrollments
from automations.runtime.actors import run_enrollments as run_enrollments_actor
from automations.runtime.broker import build_broker, embedded_worker
from bench.pipeline_journey import counting
from channels.email_batches import deliveries_needed
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.event_types import EventInput
from loyalty.events import Recorded
from loyalty.models import Enrollment, Member
from loyalty.step_counts import entered_by_step
from sandbox.sendgrid import SendGridSandbox
from tests.conftest import make_settings
from tests.engine.helpers import enrollments, journey_folder, messages, published
from tests.engine.test_wake_batches import HELLO, queued, waiting_members
from tests.factories import make_member

#: Statements a batch takes per enrollment that wakes and sends one email (measured: 8 for
#: 40, on both databases: the batch's own few, the messages' one insert and the enrollments'
#: updates in one executemany; 124 when each message had its insert; one by one it took
#: about 15, with two commits).
STATEMENTS_PER_ENROLLMENT = 1


def mailing(app: App, sandbox: SendGridSandbox) -> App:
    app.settings = make_settings(
        app.database,
        email_batch_gather_ms=0,
        sendgrid_api_key=sandbox.api_key,
        sendgrid_base_url=sandbox.base_url,
        email_from="club@example.com",
        outbox_dir=app.settings.outbox_dir,
        journeys_dir=app.settings.journeys_dir,
    )
    return app


def test_a_batch_commits_once_and_its_emails_need_one_delivery_and_one_request(
    app: App, clock: FrozenClock, tmp_path: Path, sendgrid_sandbox: SendGridSandbox
) -> None:
    # Given 40 enrollments whose wait ends now, with mail going to the SendGrid emulator
    waiting = waiting_members(app, tmp_path, 40)
    mailing(app, sendgrid_sandbox)
    clock.advance(timedelta(days=2, minutes=1))
    runtime.configure(app)
    broker = build_broker(app.settings)
    assert isinstance(broker, StubBroker)

    # When one batch message runs them
    with counting(app.database.engine) as counts:
        run_enrollments_actor(waiting)

    # Then one commit ran them all, each in a bounded number of statements
    assert counts.commits == 1, str(counts)
    assert counts.statements <= STATEMENTS_PER_ENROLLMENT * len(waiting), str(counts)
    assert Counter(e.state for e in enrollments(app)) == Counter({"completed": 40})
    with app.database.sessions() as session:
        assert entered_by_step(session, "later") == {"pause": 40, "mail": 40}
    made = [m.id for m in messages(app)]
    assert len(made) == 40
    # And their emails were queued as one delivery batch, of which one delivery has work
    [batch] = queued(broker, "messages")
    assert (batch.actor_name, sorted(batch.args[0])) == ("deliver_messages", made)
    assert deliveries_needed(app, batch.args[0]) == [min(made)]

    # When the workers deliver them, the 40 leave in one request
    with embedded_worker(broker, threads=2):
        pass
    sent = [json.loads(r.body) for r in sendgrid_sandbox.requests(path="/v3/mail/send")]
    assert [len(body["personalizations"]) for body in sent] == [40]
    assert Counter(m.state for m in messages(app)) == Counter({"sent": 40})


@pytest.mark.integration
def test_an_enrollment_whose_member_another_worker_holds_runs_alone_after_the_batch(
    postgres_app: App, clock: FrozenClock, tmp_path: Path
) -> None:
    # Given 10 woken enrollments, and another worker holding one of their members
    app = postgres_app
    waiting = waiting_members(app, tmp_path, 10)
    clock.advance(timedelta(days=2, minutes=1))
    held = waiting[3]
    with app.database.transaction() as other:
        member_id = other.scalar(select(Enrollment.member_id).where(Enrollment.id == held))
        other.scalar(select(Member.id).where(Member.id == member_id).with_for_update())

        # When the batch runs meanwhile, it does not wait for that member
        ran = run_enrollments(app, waiting)

    # Then the nine others ran and made their emails; the held one is left to run alone
    assert ran.alone == [held]
    assert len(ran.messages) == 9
    states = {e.id: e.state for e in enrollments(app)}
    assert states.pop(held) == "waiting"
    assert set(states.values()) == {"completed"}
    with app.database.sessions() as session:
        assert entered_by_step(session, "later") == {"pause": 10, "mail": 9}

    # And run alone, once the member is free, it sends its email too
    runtime.configure(app)
    with embedded_worker(build_broker(app.settings), threads=1):
        run_enrollments_actor([held])
    assert Counter(e.state for e in enrollments(app)) == Counter({"completed": 10})
    made = {m.enrollment_id: m.state for m in messages(app)}
    assert len(made) == 10 and made[held] == "sent"  # (the batch's nine were not queued here)


NOW = """
id: now
name: Now
status: active
trigger: {type: event, event: member.enrolled}
entry: {once: true}
steps:
  - {id: mail, type: send_email, template: hello}
"""


def test_events_that_arrive_together_start_their_journeys_together(
    app: App, tmp_path: Path, sendgrid_sandbox: SendGridSandbox
) -> None:
    # Given a journey that mails a member on `member.enrolled`, and 20 sign-ups stored at once
    published(app, journey_folder(tmp_path, {"now": NOW}, HELLO))
    mailing(app, sendgrid_sandbox)
    made = [make_member(app, email=f"n{n}@example.com", email_consent=True) for n in range(20)]
    stored = store_batch(
        app, [EventInput("member.enrolled", m.external_id, id=f"e-{m.external_id}") for m in made]
    )
    ids = [r.row.id for r in stored if isinstance(r, Recorded)]
    runtime.configure(app)
    broker = build_broker(app.settings)
    assert isinstance(broker, StubBroker)

    # When they are queued together, over two worker threads
    assert queue_events(ids, spread=2) == []
    sent = queued(broker, "events")
    assert [(m.actor_name, len(m.args[0])) for m in sent] == [("process_events", 10)] * 2

    # Then each message's events start their journeys as one batch, and with no gathering
    # delay at all its ten emails leave in one request (or the two batches' in one, when
    # both ran before the first delivery): not one request per event
    with embedded_worker(broker, threads=1):
        pass
    bodies = [json.loads(r.body) for r in sendgrid_sandbox.requests(path="/v3/mail/send")]
    sizes = [len(body["personalizations"]) for body in bodies]
    assert sum(sizes) == 20 and len(sizes) <= 2, sizes
    assert Counter(e.state for e in enrollments(app)) == Counter({"completed": 20})
    assert Counter(m.state for m in messages(app)) == Counter({"sent": 20})
