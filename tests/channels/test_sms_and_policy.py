"""SMS through the official Twilio client, and the contact policy: STOP, caps, quiet hours."""

from __future__ import annotations

import socket
import time as timer
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from automations.runtime import actors
from automations.runtime.pacing import redis_pacers
from automations.runtime.ticks import relay_messages
from channels.delivery import CLAIM_LEASE, CLAIM_TIMEOUT, deliver, settle_stale
from channels.render import RenderError, render_message
from loyalty.app import App
from loyalty.clock import FrozenClock, SystemClock
from loyalty.errors import RetriableError
from loyalty.event_types import EventInput
from loyalty.models import Member, Message
from sandbox.twilio import TwilioSandbox
from tests.channels.conftest import SENDER
from tests.channels.support import another_message, due_messages, promo_version
from tests.engine.helpers import journey_folder, messages, published, send_event, workers
from tests.factories import make_member


def created(sandbox: TwilioSandbox) -> list[str]:
    return [r.path for r in sandbox.requests(method="POST") if r.path.endswith("/Messages.json")]


def test_sms_go_through_twilio_with_our_callback(
    sms_app: App, twilio_sandbox: TwilioSandbox, tmp_path: Path
) -> None:
    [message_id] = due_messages(sms_app, promo_version(sms_app, tmp_path), 1, "sms")
    assert deliver(sms_app, message_id) == "sent"
    [request] = twilio_sandbox.requests(method="POST")
    form = dict(pair.split("=", 1) for pair in request.body.decode().split("&"))
    assert form["From"] == "%2B15005550006"
    assert f"message_id%3D{message_id}" in form["StatusCallback"]
    with sms_app.database.sessions() as session:
        message = session.get(Message, message_id)
        assert message is not None and (message.provider_id or "").startswith("SM")
        assert (message.segments, message.locale) == (1, "en")


def test_after_stop_no_more_sms(
    sms_app: App, twilio_sandbox: TwilioSandbox, tmp_path: Path
) -> None:
    version = promo_version(sms_app, tmp_path)
    [first] = due_messages(sms_app, version, 1, "sms")
    twilio_sandbox.send_inbound("+14155550000", SENDER, "STOP")  # Twilio now refuses: 21610
    assert deliver(sms_app, first) == "failed"
    with sms_app.database.sessions() as session:
        member = session.scalar(select(Member))
        message = session.get(Message, first)
        assert member is not None and member.sms_consent is False
        assert message is not None and message.error == "21610: recipient opted out"
    with sms_app.database.transaction() as session:
        # Consent given again by mistake elsewhere: the STOP suppression still holds.
        member = session.scalar(select(Member))
        assert member is not None
        member.sms_consent = True
    second = another_message(sms_app, version, member.id, "sms", "later")
    assert deliver(sms_app, second) == "suppressed"
    assert len(created(twilio_sandbox)) == 1


def test_caps_hold_across_two_journeys(app: App, tmp_path: Path) -> None:
    journey = """
    id: {id}
    name: {id}
    status: active
    trigger: {{type: event, event: order.completed}}
    entry: {{every_time: true}}
    steps:
      - {{id: text, type: send_sms, template: hello}}
    """
    published(
        app,
        journey_folder(
            tmp_path,
            {"first": journey.format(id="first"), "second": journey.format(id="second")},
            {"en/hello.sms": "Hi! STOP to end"},
        ),
    )
    app.settings = app.settings.model_copy(update={"sms_quiet_hours": ""})
    make_member(app, external_id="m-1", phone="+14155550100", sms_consent=True)
    send_event(
        app,
        EventInput(
            "order.completed",
            "m-1",
            id="o-1",
            data={"order_id": "1", "total": 5, "currency": "USD"},
        ),
    )
    sent = [m for m in messages(app) if m.state == "sent"]
    capped = [m for m in messages(app) if m.state == "suppressed"]
    assert len(sent) == 1 and len(capped) == 1
    assert capped[0].error == "frequency_cap"
    assert {sent[0].journey_id, capped[0].journey_id} == {"first", "second"}


ZONES = [
    "Europe/Warsaw",
    "America/New_York",
    "Australia/Sydney",
    "Asia/Kolkata",
    "America/Los_Angeles",
    "Pacific/Auckland",
    "UTC",
]


def _quiet(instant: datetime, zone: str) -> bool:
    local = instant.astimezone(ZoneInfo(zone)).time()
    return local >= time(21) or local < time(9)


def test_nothing_leaves_inside_quiet_hours(app: App, tmp_path: Path) -> None:
    version = promo_version(app, tmp_path)
    counter = iter(range(10_000))

    @settings(
        max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        zone=st.sampled_from(ZONES),
        at=st.datetimes(
            min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
        ),
    )
    def check(zone: str, at: datetime) -> None:
        clock = FrozenClock(at)
        local_app = App(app.settings, app.database, clock)
        n = next(counter)
        with local_app.database.transaction() as session:
            session.execute(update(Message).values(state="sent"))
        [message_id] = due_messages(local_app, version, 1, "sms", start=n, time_zone=zone)[-1:]
        state = deliver(local_app, message_id)
        with local_app.database.sessions() as session:
            message = session.get(Message, message_id)
            assert message is not None
        if state == "sent":
            assert message.sent_at is not None and not _quiet(message.sent_at, zone)
            return
        assert state == "deferred" and _quiet(at, zone)
        assert message.next_attempt_at is not None
        assert message.next_attempt_at.astimezone(ZoneInfo(zone)).time() == time(9)
        clock.set(message.next_attempt_at)
        with workers(local_app):
            relay_messages(local_app)
        with local_app.database.sessions() as session:
            message = session.get(Message, message_id)
            assert message is not None and message.state == "sent"
            assert message.sent_at is not None and not _quiet(message.sent_at, zone)

    check()


@pytest.mark.parametrize(
    "body",
    [
        "{{ member.__class__.__mro__ }}",
        "{{ member.items }}{{ member.__dict__ }}",
        "{% for i in (1..1000000) %}x{% endfor %}",
        "{% for i in (1..200000) %}{{ big }}{% endfor %}",
    ],
)
def test_template_attacks_are_refused_quickly(body: str) -> None:
    data = {"member": {"first_name": "Ann"}, "big": "x" * 1000}
    started = timer.monotonic()
    with pytest.raises(RenderError):
        render_message({"en/attack.sms": body}, "attack", "sms", ["en"], data)
    assert timer.monotonic() - started < 1.0


def test_sends_from_one_sender_are_paced(
    sms_app: App, twilio_sandbox: TwilioSandbox, tmp_path: Path
) -> None:
    sms_app.settings = sms_app.settings.model_copy(
        update={"twilio_messages_per_second": 10, "max_marketing_sms_per_day": 10}
    )
    ids = due_messages(sms_app, promo_version(sms_app, tmp_path), 12, "sms")
    for message_id in ids:
        assert deliver(sms_app, message_id) == "sent"
    times = sorted(r.at for r in twilio_sandbox.requests(method="POST"))
    # 10 a second: the 11th and 12th wait for the first second's window to pass.
    assert times[-1] - times[0] >= 0.95


def _as_a_killed_worker_left_it(app: App, message_id: int, *, request_left: bool) -> None:
    """The row a worker leaves when it dies after claiming (and maybe sending) a message."""
    now = app.clock.now()
    with app.database.transaction() as session:
        session.execute(
            update(Message)
            .where(Message.id == message_id)
            .values(
                state="claimed",
                attempts=1,
                updated_at=now,
                request_at=now if request_left else None,
            )
        )


def test_a_claim_whose_request_never_left_returns_to_pending_and_is_sent_once(
    sms_app: App, twilio_sandbox: TwilioSandbox, tmp_path: Path, clock: FrozenClock
) -> None:
    # Given a worker killed after claiming an SMS, before its request left
    [message_id] = due_messages(sms_app, promo_version(sms_app, tmp_path), 1, "sms")
    _as_a_killed_worker_left_it(sms_app, message_id, request_left=False)
    # When its lease lapses and the relay runs
    clock.advance(CLAIM_LEASE + timedelta(seconds=1))
    settle_stale(sms_app)
    with sms_app.database.sessions() as session:
        row = session.get(Message, message_id)
        assert row is not None and (row.state, row.attempts) == ("pending", 0)
    # Then the next delivery sends it, once
    assert deliver(sms_app, message_id) == "sent"
    assert deliver(sms_app, message_id) is None
    assert len(created(twilio_sandbox)) == 1


def test_a_claim_whose_request_left_becomes_unknown_and_is_never_resent(
    sms_app: App, twilio_sandbox: TwilioSandbox, tmp_path: Path, clock: FrozenClock
) -> None:
    [message_id] = due_messages(sms_app, promo_version(sms_app, tmp_path), 1, "sms")
    _as_a_killed_worker_left_it(sms_app, message_id, request_left=True)
    clock.advance(CLAIM_LEASE + timedelta(seconds=1))
    settle_stale(sms_app)
    with sms_app.database.sessions() as session:
        assert session.scalar(select(Message.state).where(Message.id == message_id)) == "claimed"
    clock.advance(CLAIM_TIMEOUT)
    settle_stale(sms_app)
    assert deliver(sms_app, message_id) is None
    with sms_app.database.sessions() as session:
        assert session.scalar(select(Message.state).where(Message.id == message_id)) == "unknown"
    assert created(twilio_sandbox) == []


def test_an_unreachable_pacing_window_is_retried_and_claims_nothing(
    sms_app: App, twilio_sandbox: TwilioSandbox, tmp_path: Path
) -> None:
    # Given the shared rate window lives in a Redis that cannot be reached
    [message_id] = due_messages(sms_app, promo_version(sms_app, tmp_path), 1, "sms")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sms_app.pacers = redis_pacers(f"redis://127.0.0.1:{port}/0")
    # When a worker delivers, the failure is one to retry, and the message is still pending
    with pytest.raises(RetriableError):
        deliver(sms_app, message_id)
    with sms_app.database.sessions() as session:
        row = session.get(Message, message_id)
        assert row is not None and (row.state, row.attempts) == ("pending", 0)
    assert created(twilio_sandbox) == []


@pytest.mark.integration
def test_a_throttled_sms_is_retried_by_the_worker_and_the_senders_window_pauses(
    sms_app: App, twilio_sandbox: TwilioSandbox, tmp_path: Path, redis_url: str
) -> None:
    # Given Twilio takes one message per 2 s from our number, and a real clock
    settings = sms_app.settings.model_copy(update={"send_retry_base_seconds": 1})
    app = App(settings, sms_app.database, SystemClock(), redis_pacers(redis_url))
    version = promo_version(app, tmp_path)
    ids = due_messages(app, version, 2, "sms")
    twilio_sandbox.set_faults(rate_limit=1, rate_window_s=2.0)

    # When the workers deliver both (no scheduler runs: no relay tick)
    with workers(app):
        for message_id in ids:
            actors.send("deliver_message", message_id)
        deadline = timer.monotonic() + 20
        while timer.monotonic() < deadline:
            with app.database.sessions() as session:
                states = set(session.scalars(select(Message.state)))
            if states == {"sent"}:
                break
            timer.sleep(0.1)

    # Then the worker's own retry sent the refused one, and each went out once
    assert states == {"sent"}
    assert twilio_sandbox.requests(method="POST", status=429)
    assert len(twilio_sandbox.requests(method="POST", status=201)) == 2


@pytest.mark.integration
def test_a_429_pauses_every_worker_sending_from_that_number_for_its_retry_after(
    sms_app: App, twilio_sandbox: TwilioSandbox, tmp_path: Path, redis_url: str
) -> None:
    sms_app.pacers = redis_pacers(redis_url)
    [message_id] = due_messages(sms_app, promo_version(sms_app, tmp_path), 1, "sms")
    pause_key = f"loyalty:crm-pause:twilio:{SENDER}"
    client = redis.Redis.from_url(redis_url)
    client.delete(pause_key)
    twilio_sandbox.set_faults(error_rate=1.0, error_statuses=(429,), error_retry_after_s=20)

    assert deliver(sms_app, message_id) == "pending"

    assert 15_000 < client.pttl(pause_key) <= 20_000  # the shared window waits as asked
    with sms_app.database.sessions() as session:
        row = session.get(Message, message_id)
        assert row is not None and row.next_attempt_at is not None
        assert row.next_attempt_at >= sms_app.clock.now() + timedelta(seconds=20)
