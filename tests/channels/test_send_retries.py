"""Send retries end: exponential backoff, Retry-After honoured, a dead letter after the last try."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path

import dramatiq
from click.testing import CliRunner
from sqlalchemy import select

from automations.runtime.dead_letters import list_dead_letters, replay
from automations.runtime.ticks import relay_messages
from channels.delivery import deliver
from channels.email_batches import flush_emails
from channels.retries import retry_delay
from cli import main
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.models import DeadLetter, Message
from loyalty.settings import load_settings
from sandbox.recorder import RecordedRequest
from sandbox.sendgrid import SendGridSandbox
from sandbox.twilio import TwilioSandbox
from tests.channels.support import due_messages, promo_version
from tests.engine.helpers import workers


def row(app: App, message_id: int) -> Message:
    with app.database.sessions() as session:
        message = session.get(Message, message_id)
    assert message is not None
    return message


def mail_sends(sandbox: SendGridSandbox) -> list[RecordedRequest]:
    return sandbox.requests(path="/v3/mail/send", method="POST")


def sms_sends(sandbox: TwilioSandbox) -> list[RecordedRequest]:
    return [r for r in sandbox.requests(method="POST") if r.path.endswith("/Messages.json")]


def test_backoff_doubles_with_equal_jitter_up_to_the_cap() -> None:
    settings = load_settings(send_retry_base_seconds=30, send_retry_max_seconds=600)
    rng = random.Random(5)
    for attempts, step in [(1, 30), (2, 60), (3, 120), (4, 240), (5, 480), (6, 600), (9, 600)]:
        waits = [retry_delay(attempts, settings, rng=rng).total_seconds() for _ in range(200)]
        assert step / 2 <= min(waits) and max(waits) <= step
        assert max(waits) - min(waits) > step / 4  # jittered, not one fixed value
    # A provider's Retry-After wins over a shorter backoff, never over a longer one.
    assert retry_delay(1, settings, 900.0, rng=rng) == timedelta(seconds=900)
    assert retry_delay(6, settings, 5.0, rng=rng) >= timedelta(seconds=300)


def test_an_email_refused_with_500_forever_fails_after_send_max_attempts(
    mail_app: App, sendgrid_sandbox: SendGridSandbox, tmp_path: Path, clock: FrozenClock
) -> None:
    settings = mail_app.settings
    assert settings.send_max_attempts == 8  # the default
    [message_id] = due_messages(mail_app, promo_version(mail_app, tmp_path), 1, "email")
    sendgrid_sandbox.set_faults(error_rate=1.0, error_statuses=(500,))

    waits: list[float] = []
    for attempt in range(1, settings.send_max_attempts + 1):
        flush_emails(mail_app)
        assert len(mail_sends(sendgrid_sandbox)) == attempt
        message = row(mail_app, message_id)
        assert message.attempts == attempt
        if attempt == settings.send_max_attempts:
            break
        assert message.state == "pending" and message.error == "HTTP 500"
        assert message.next_attempt_at is not None
        waits.append((message.next_attempt_at - clock.now()).total_seconds())
        # Not a moment before its time: nothing leaves just before the next attempt is due.
        clock.set(message.next_attempt_at - timedelta(seconds=1))
        flush_emails(mail_app)
        assert len(mail_sends(sendgrid_sandbox)) == attempt
        clock.set(message.next_attempt_at)

    # Each wait is within its doubling step and longer than the one before.
    for n, wait in enumerate(waits):
        step = settings.send_retry_base_seconds * 2**n
        assert step / 2 <= wait <= step, (n, waits)
    assert waits == sorted(waits) and len(set(waits)) == len(waits)

    message = row(mail_app, message_id)
    assert message.state == "failed"
    assert message.error == "gave up after 8 attempts: HTTP 500"
    assert message.next_attempt_at is None
    # Nothing sends it again: neither a later flush nor the relay tick.
    clock.advance(timedelta(days=2))
    with workers(mail_app):
        assert relay_messages(mail_app) == 0
    flush_emails(mail_app)
    assert len(mail_sends(sendgrid_sandbox)) == settings.send_max_attempts
    assert all(r.status == 500 for r in mail_sends(sendgrid_sandbox))

    [dead] = list_dead_letters(mail_app.database)
    assert (dead.actor, dead.queue, dead.args) == (
        "deliver_message",
        "messages",
        {"args": [message_id], "kwargs": {}},
    )
    assert dead.error == "gave up after 8 attempts: HTTP 500"
    listed = CliRunner().invoke(main, ["dlq", "list"], env={"DATABASE_URL": mail_app.database.url})
    assert listed.exit_code == 0, listed.output
    assert f"deliver_message({message_id},)" in listed.output
    assert "1 dead letter(s)" in listed.output


def test_a_given_up_email_is_sent_when_its_dead_letter_is_replayed(
    mail_app: App, sendgrid_sandbox: SendGridSandbox, tmp_path: Path, clock: FrozenClock
) -> None:
    mail_app.settings = mail_app.settings.model_copy(update={"send_max_attempts": 2})
    [message_id] = due_messages(mail_app, promo_version(mail_app, tmp_path), 1, "email")
    sendgrid_sandbox.set_faults(error_rate=1.0, error_statuses=(503,))
    flush_emails(mail_app)
    clock.set(row(mail_app, message_id).next_attempt_at or clock.now())
    flush_emails(mail_app)
    assert row(mail_app, message_id).state == "failed"
    [dead] = list_dead_letters(mail_app.database)

    # The provider is back; the operator replays the dead letter.
    sendgrid_sandbox.set_faults(error_rate=0.0)
    clock.advance(timedelta(hours=3))
    with workers(mail_app):
        replay(mail_app.database, dramatiq.get_broker(), dead.id, now=clock.now())
    message = row(mail_app, message_id)
    assert (message.state, message.attempts, message.error) == ("sent", 1, None)
    assert message.decisions["retried"]["after"] == "gave up after 2 attempts: HTTP 503"
    sent = sendgrid_sandbox.requests(path="/v3/mail/send", status=202)
    assert len(sent) == 1
    [personalization] = json.loads(sent[0].body)["personalizations"]
    assert personalization["custom_args"]["message_id"] == str(message_id)
    assert list_dead_letters(mail_app.database) == []

    # Replaying it again sends nothing more: the message is no longer failed.
    with workers(mail_app):
        replay(mail_app.database, dramatiq.get_broker(), dead.id, now=clock.now())
    assert len(mail_sends(sendgrid_sandbox)) == 3
    assert row(mail_app, message_id).state == "sent"
    with mail_app.database.sessions() as session:
        assert session.scalar(select(DeadLetter.replayed_at)) is not None


def test_a_replayed_message_that_still_fails_gets_all_its_attempts_and_a_new_dead_letter(
    mail_app: App, sendgrid_sandbox: SendGridSandbox, tmp_path: Path, clock: FrozenClock
) -> None:
    mail_app.settings = mail_app.settings.model_copy(update={"send_max_attempts": 2})
    [message_id] = due_messages(mail_app, promo_version(mail_app, tmp_path), 1, "email")
    sendgrid_sandbox.set_faults(error_rate=1.0, error_statuses=(500,))
    flush_emails(mail_app)
    clock.set(row(mail_app, message_id).next_attempt_at or clock.now())
    flush_emails(mail_app)
    [first] = list_dead_letters(mail_app.database)

    with workers(mail_app):
        replay(mail_app.database, dramatiq.get_broker(), first.id, now=clock.now())
    message = row(mail_app, message_id)
    assert (message.state, message.attempts) == ("pending", 1)
    clock.set(message.next_attempt_at or clock.now())
    flush_emails(mail_app)
    assert row(mail_app, message_id).state == "failed"
    assert len(mail_sends(sendgrid_sandbox)) == 4
    [second] = list_dead_letters(mail_app.database)
    assert second.id != first.id and second.args == first.args


def test_retry_after_from_sendgrid_is_honoured(
    mail_app: App, sendgrid_sandbox: SendGridSandbox, tmp_path: Path, clock: FrozenClock
) -> None:
    [message_id] = due_messages(mail_app, promo_version(mail_app, tmp_path), 1, "email")
    sendgrid_sandbox.set_faults(error_rate=1.0, error_statuses=(503,), error_retry_after_s=900)
    started = clock.now()
    flush_emails(mail_app)
    [refused] = mail_sends(sendgrid_sandbox)
    assert refused.response_headers["retry-after"] == "900"
    due = row(mail_app, message_id).next_attempt_at
    # The backoff alone would wait at most 30 s; SendGrid asked for 15 minutes.
    assert due is not None and due - started >= timedelta(seconds=900)

    sendgrid_sandbox.set_faults(error_rate=0.0)
    clock.set(started + timedelta(seconds=899))
    flush_emails(mail_app)
    assert len(mail_sends(sendgrid_sandbox)) == 1
    clock.set(due)
    flush_emails(mail_app)
    assert len(mail_sends(sendgrid_sandbox)) == 2
    assert row(mail_app, message_id).state == "sent"


def test_an_sms_refused_forever_fails_after_send_max_attempts_honouring_retry_after(
    sms_app: App, twilio_sandbox: TwilioSandbox, tmp_path: Path, clock: FrozenClock
) -> None:
    sms_app.settings = sms_app.settings.model_copy(update={"send_max_attempts": 3})
    [message_id] = due_messages(sms_app, promo_version(sms_app, tmp_path), 1, "sms")
    twilio_sandbox.set_faults(error_rate=1.0, error_statuses=(503,), error_retry_after_s=600)

    started = clock.now()
    assert deliver(sms_app, message_id) == "pending"
    due = row(sms_app, message_id).next_attempt_at
    assert due is not None and due - started >= timedelta(seconds=600)
    clock.set(due - timedelta(seconds=1))
    assert deliver(sms_app, message_id) is None  # not due yet: nothing sent
    assert len(sms_sends(twilio_sandbox)) == 1

    clock.set(due)
    assert deliver(sms_app, message_id) == "pending"
    clock.set(row(sms_app, message_id).next_attempt_at or clock.now())
    assert deliver(sms_app, message_id) == "failed"
    clock.advance(timedelta(hours=1))
    assert deliver(sms_app, message_id) is None

    assert len(sms_sends(twilio_sandbox)) == 3
    assert all(r.status == 503 for r in sms_sends(twilio_sandbox))
    message = row(sms_app, message_id)
    assert (message.state, message.attempts) == ("failed", 3)
    assert message.error == "gave up after 3 attempts: HTTP 503 (20503)"
    [dead] = list_dead_letters(sms_app.database)
    assert dead.args["args"] == [message_id] and dead.error == message.error
