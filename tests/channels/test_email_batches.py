"""Emails of one step that are due together leave together: gathered, then one request a 1,000."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from channels.delivery import deliver
from channels.email_batches import Gathering
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.models import Enrollment, Message
from sandbox.sendgrid import SendGridSandbox
from tests.channels.support import another_message, due_messages, promo_version, states


def accepted(sandbox: SendGridSandbox) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in sandbox.requests(path="/v3/mail/send", status=202)]


def sizes(sandbox: SendGridSandbox) -> list[int]:
    return [len(body["personalizations"]) for body in accepted(sandbox)]


def gathering(app: App, *, gather_ms: int = 1000, max_wait_ms: int = 30_000) -> App:
    app.settings = app.settings.model_copy(
        update={"email_batch_gather_ms": gather_ms, "email_batch_max_wait_ms": max_wait_ms}
    )
    return app


def test_the_first_email_waits_until_its_step_stops_making_more_then_all_leave_in_one_request(
    mail_app: App, sendgrid_sandbox: SendGridSandbox, tmp_path: Path, clock: FrozenClock
) -> None:
    # Given a step that has made three emails so far
    app = gathering(mail_app)
    version = promo_version(app, tmp_path)
    first = due_messages(app, version, 3, "email")

    # When each one's delivery runs, the first waits for more and the others leave it to it
    assert deliver(app, first[0]) == Gathering(first[0], 1.0)
    assert [deliver(app, i) for i in first[1:]] == [None, None]
    clock.advance(timedelta(milliseconds=600))
    more = due_messages(app, version, 2, "email", start=3)[3:]  # (all so far, in order)
    assert [deliver(app, i) for i in more] == [None, None]
    # (the wait runs from the newest email)
    assert deliver(app, first[0]) == Gathering(first[0], 1.0)
    assert sizes(sendgrid_sandbox) == []

    # Then once none came for a second, the five leave in one request, each once
    clock.advance(timedelta(seconds=1))
    assert deliver(app, first[0]) == "sent"
    assert sizes(sendgrid_sandbox) == [5]
    assert states(app) == {"sent": 5}
    assert [deliver(app, i) for i in first + more] == [None] * 5
    assert len(accepted(sendgrid_sandbox)) == 1


def step_not_yet_run(app: App, message_id: int) -> int:
    """Undo one member's run of the step: its enrollment is due there, its email not made."""
    with app.database.transaction() as session:
        message = session.get(Message, message_id)
        assert message is not None
        enrollment = session.get(Enrollment, message.enrollment_id)
        assert enrollment is not None
        enrollment.state, enrollment.next_run_at = "active", app.clock.now()
        session.delete(message)
        return enrollment.id


def test_a_batch_gathers_while_members_are_still_due_to_run_its_step(
    mail_app: App, sendgrid_sandbox: SendGridSandbox, tmp_path: Path, clock: FrozenClock
) -> None:
    # Given a step run that made two emails, and a member due to run it that a busy
    # worker has not reached in the quiet time
    app = gathering(mail_app, gather_ms=1000, max_wait_ms=5000)
    version = promo_version(app, tmp_path)
    ids = due_messages(app, version, 3, "email")
    waiting = step_not_yet_run(app, ids[2])
    clock.advance(timedelta(seconds=2))

    # When the lead looks again, it gathers on
    assert deliver(app, ids[0]) == Gathering(ids[0], 1.0)
    assert sizes(sendgrid_sandbox) == []

    # Then once the member ran the step, the batch leaves at once
    with app.database.transaction() as session:
        enrollment = session.get(Enrollment, waiting)
        assert enrollment is not None
        enrollment.state, enrollment.next_run_at = "completed", None
    assert deliver(app, ids[0]) == "sent"
    assert sizes(sendgrid_sandbox) == [2]


def test_a_step_run_that_stalls_holds_its_emails_no_longer_than_the_longest_wait(
    mail_app: App, sendgrid_sandbox: SendGridSandbox, tmp_path: Path, clock: FrozenClock
) -> None:
    app = gathering(mail_app, gather_ms=1000, max_wait_ms=5000)
    version = promo_version(app, tmp_path)
    ids = due_messages(app, version, 3, "email")
    step_not_yet_run(app, ids[2])  # and it never runs (its worker died, say)

    clock.advance(timedelta(seconds=4))
    assert deliver(app, ids[0]) == Gathering(ids[0], 1.0)
    clock.advance(timedelta(seconds=1))
    assert deliver(app, ids[0]) == "sent"
    assert sizes(sendgrid_sandbox) == [2]


def test_a_full_request_leaves_at_once_and_the_rest_gathers_again(
    mail_app: App, sendgrid_sandbox: SendGridSandbox, tmp_path: Path
) -> None:
    app = gathering(mail_app)
    ids = due_messages(app, promo_version(app, tmp_path), 1200, "email")

    assert deliver(app, ids[0]) == Gathering(ids[1000], 1.0)
    assert sizes(sendgrid_sandbox) == [1000]
    assert states(app) == {"sent": 1000, "pending": 200}
    sent = [
        int(p["custom_args"]["message_id"])
        for p in accepted(sendgrid_sandbox)[0]["personalizations"]
    ]
    assert sent == ids[:1000]


def test_a_steady_stream_still_leaves_after_the_longest_wait(
    mail_app: App, sendgrid_sandbox: SendGridSandbox, tmp_path: Path, clock: FrozenClock
) -> None:
    app = gathering(mail_app, gather_ms=1000, max_wait_ms=3000)
    version = promo_version(app, tmp_path)
    [lead] = due_messages(app, version, 1, "email")
    outcomes = [deliver(app, lead)]
    for n in range(1, 8):  # one more email every half second
        clock.advance(timedelta(milliseconds=500))
        due_messages(app, version, 1, "email", start=n)
        outcomes.append(deliver(app, lead))
    # The lead waits a second past the newest, but never past 3 s after the first
    assert outcomes[:6] == [Gathering(lead, 1.0)] * 5 + [Gathering(lead, 0.5)]
    # At 3 s the seven due leave together; the eighth, made after, is a batch of its own
    assert outcomes[6:] == ["sent", None]
    assert sizes(sendgrid_sandbox) == [7]
    assert states(app) == {"sent": 7, "pending": 1}


def test_each_step_is_a_batch_of_its_own_with_its_categories(
    mail_app: App, sendgrid_sandbox: SendGridSandbox, tmp_path: Path, clock: FrozenClock
) -> None:
    app = gathering(mail_app)
    version = promo_version(app, tmp_path)
    mail = due_messages(app, version, 2, "email")
    with app.database.sessions() as session:
        member_id = session.scalar(select(Message.member_id).where(Message.id == mail[0]))
    assert member_id is not None
    other = another_message(app, version, member_id, "email", "later")

    assert deliver(app, other) == Gathering(other, 1.0)  # a lead too: another step
    clock.advance(timedelta(seconds=1))
    assert deliver(app, mail[1]) == Gathering(mail[0], 0.0)  # ready: it wakes its lead
    assert deliver(app, mail[0]) == "sent"
    assert deliver(app, other) == "sent"
    bodies = accepted(sendgrid_sandbox)
    assert [(b["categories"], len(b["personalizations"])) for b in bodies] == [
        (["promo", "mail"], 2),
        (["promo", "text"], 1),
    ]


def test_rows_another_worker_is_claiming_are_skipped_then_sent_once(
    mail_app: App, sendgrid_sandbox: SendGridSandbox, tmp_path: Path, clock: FrozenClock
) -> None:
    if mail_app.database.is_sqlite:
        pytest.skip("SQLite has one writer: a claim never meets another")
    app = gathering(mail_app)
    ids = due_messages(app, promo_version(app, tmp_path), 5, "email")
    clock.advance(timedelta(seconds=1))

    # Given another worker's claim holding the last two rows
    with app.database.transaction() as other:
        other.scalars(select(Message).where(Message.id.in_(ids[3:])).with_for_update()).all()
        # When the batch's lead delivers, it sends what it can claim and names the rest's lead
        assert deliver(app, ids[0]) == Gathering(ids[3], 0.1)
        assert sizes(sendgrid_sandbox) == [3]
    # Then once they are free, they leave in a request of their own: every email once
    assert deliver(app, ids[3]) == "sent"
    assert sizes(sendgrid_sandbox) == [3, 2]
    sent = [
        int(p["custom_args"]["message_id"])
        for body in accepted(sendgrid_sandbox)
        for p in body["personalizations"]
    ]
    assert sorted(sent) == ids
    assert states(app) == {"sent": 5}


def test_a_second_delivery_of_a_batch_another_worker_is_claiming_sends_nothing(
    mail_app: App, sendgrid_sandbox: SendGridSandbox, tmp_path: Path, clock: FrozenClock
) -> None:
    if mail_app.database.is_sqlite:
        pytest.skip("SQLite has one writer: a claim never meets another")
    app = gathering(mail_app)
    ids = due_messages(app, promo_version(app, tmp_path), 4, "email")
    clock.advance(timedelta(seconds=1))

    # Given another worker claiming the batch: it holds the lead
    with app.database.transaction() as other:
        other.scalars(select(Message).where(Message.id == ids[0]).with_for_update()).all()
        # When the lead's delivery runs twice (a queue message delivered again, say)
        assert deliver(app, ids[0]) == Gathering(ids[0], 0.1)
        # Then the second claims nothing: the batch is not split into two requests
        assert sizes(sendgrid_sandbox) == []
    assert deliver(app, ids[0]) == "sent"
    assert sizes(sendgrid_sandbox) == [4]
