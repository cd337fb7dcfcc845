"""Erasing a member: personal data gone everywhere, queued messages cancelled, journeys ended."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from channels.webhooks import apply_sendgrid_events, apply_twilio_inbound, apply_twilio_status
from cli import main
from loyalty.app import App
from loyalty.erasure import WORK_ABOUT
from loyalty.event_types import EventInput
from loyalty.models import (
    Base,
    CrmLink,
    DeadLetter,
    Enrollment,
    Event,
    LedgerEntry,
    Member,
    Message,
    ProviderEvent,
    Referral,
    Survey,
    SyncCursor,
)
from tests.engine.helpers import enrollments, journey_folder, messages, published, send_event
from tests.factories import make_member

JOURNEY = """
id: later
name: Later
status: active
trigger: {type: event, event: member.enrolled}
entry: {once: true}
steps:
  - {id: pause, type: wait, duration: 2d}
  - {id: mail, type: send_email, template: hello}
"""


def test_erase_blanks_the_member_and_stops_everything_queued(app: App, tmp_path: Path) -> None:
    published(
        app,
        journey_folder(
            tmp_path, {"later": JOURNEY}, {"en/hello.email": "---\nsubject: Hi\n---\n<p>Hi</p>\n"}
        ),
    )
    make_member(
        app,
        external_id="m-1",
        email="ann@example.com",
        phone="+14155550100",
        first_name="Ann",
        email_consent=True,
        attributes={"vip": True},
    )
    send_event(app, EventInput("member.enrolled", "m-1", id="e-1"))
    assert enrollments(app)[0].state == "waiting"
    with app.database.transaction() as session:
        member_id = session.scalar(select(Member.id))
        session.add(
            Survey(
                member_id=member_id,
                kind="nps",
                channel="email",
                token="t-1",
                score=9,
                comment="Ask for Ann at the Kraków store",
                sent_at=app.clock.now(),
            )
        )

    result = CliRunner().invoke(
        main, ["members", "erase", "m-1", "--yes"], env={"DATABASE_URL": app.database.url}
    )
    assert result.exit_code == 0, result.output
    assert "1 journey(s) ended; CRMs: none configured" in result.output
    shown = CliRunner().invoke(
        main, ["members", "show", "m-1", "--json"], env={"DATABASE_URL": app.database.url}
    )
    assert '"email": null' in shown.output and '"first_name": null' in shown.output
    assert '"attributes": {}' in shown.output and '"erased_at": "2026-' in shown.output
    [enrollment] = enrollments(app)
    assert (enrollment.state, enrollment.exit_reason) == ("exited", "erased")
    assert messages(app) == []
    with app.database.sessions() as session:
        survey = session.scalar(select(Survey))
        assert survey is not None and (survey.score, survey.comment) == (9, None)


EMAIL = "Zofia.Brzek@example.com"
PHONE = "+14155550123"
FIRST, LAST = "Zofia", "Brzęczyszczykiewicz"
WELCOME = """
id: welcome
name: Welcome
status: active
trigger: {type: event, event: order.completed}
entry: {every_time: true}
steps:
  - {id: mail, type: send_email, template: hello}
  - {id: text, type: send_sms, template: hello}
  - {id: pause, type: wait, duration: 2d}
  - {id: later, type: send_email, template: hello}
"""
REFERRED = """
id: referred
name: Thanks for referring
status: active
trigger: {type: event, event: referral.completed}
entry: {every_time: true}
steps:
  - {id: pause, type: wait, duration: 2d}
"""
HELLO = {
    "en/hello.email": (
        '---\nsubject: "Hi {{ member.first_name }} {{ member.last_name }}"\n---\n'
        "<p>Hello {{ member.first_name }}, order {{ event.order_id }}</p>\n"
    ),
    "en/hello.sms": "Hi {{ member.first_name }}! STOP to opt out",
}
ORDER = {
    "order_id": "1001",
    "total": "40",
    "currency": "EUR",
    "customer": {"email": EMAIL, "first_name": FIRST, "last_name": LAST},
    "shipping_address": "Długa 5, 31-147 Kraków",
    "note": f"Gift wrap please, call {PHONE}",
}


def database_text(app: App) -> list[str]:
    """Every row of every table, as text."""
    with app.database.engine.connect() as connection:
        return [
            f"{table.name}: {row!r}"
            for table in Base.metadata.sorted_tables
            for row in connection.execute(select(table))
        ]


def outbox_text(folder: Path) -> list[str]:
    return [
        f"{path}: {path.read_bytes().decode('utf-8', 'replace')}"
        for path in folder.rglob("*")
        if path.is_file()
    ]


def personal(texts: list[str]) -> list[str]:
    needles = [EMAIL.lower(), PHONE, FIRST.lower(), LAST.lower()]
    return [text for text in texts if any(n in text.lower() for n in needles)]


def test_erasure_leaves_no_personal_data_anywhere(app: App, tmp_path: Path) -> None:
    app.settings = app.settings.model_copy(update={"referral_hold_days": 0})  # paid at once
    published(app, journey_folder(tmp_path, {"welcome": WELCOME, "referred": REFERRED}, HELLO))
    referrer = make_member(app, external_id="m-0", email="olek@example.com", first_name="Olek")
    make_member(
        app,
        external_id="m-1",
        email=EMAIL,
        phone=PHONE,
        first_name=FIRST,
        last_name=LAST,
        birth_year=1990,
        birth_month=5,
        birth_day=17,
        email_consent=True,
        sms_consent=True,
        attributes={"favourite_store": "Kraków"},
    )
    now = app.clock.now()
    with app.database.transaction() as session:
        member_id = session.scalar(select(Member.id).where(Member.external_id == "m-1"))
        assert member_id is not None
        code = referrer.referral_code
        session.add(
            Referral(
                referrer_id=referrer.id,
                referee_id=member_id,
                code=code,
                status="pending",
                created_at=now,
            )
        )
    # The first order earns points, sends an email and an SMS (both to the local outbox),
    # leaves the journey waiting and completes the referral, which names the member.
    send_event(app, EventInput("order.completed", "m-1", id="e-1001", data=ORDER))
    email, sms = messages(app)[:2]
    assert (email.channel, email.state, sms.channel, sms.state) == ("email", "sent", "sms", "sent")
    assert len(personal(outbox_text(app.settings.outbox_dir))) == 2
    with app.database.sessions() as session:
        order_id = session.scalar(select(Event.id).where(Event.external_id == "e-1001"))
        referral_event = session.scalar(select(Event).where(Event.type == "referral.completed"))
        assert referral_event is not None
        assert referral_event.payload["referee_first_name"] == FIRST
        referrer_enrollment = session.scalar(
            select(Enrollment.id).where(Enrollment.member_id == referrer.id)
        )
        member_enrollment = session.scalar(
            select(Enrollment.id).where(Enrollment.member_id == member_id)
        )
    with app.database.transaction() as session:
        # Provider webhooks about the member's messages, and an SMS from their number.
        apply_sendgrid_events(
            session,
            [
                {"email": EMAIL, "event": "delivered", "timestamp": 1773144001,
                 "sg_event_id": "sg-1", "sg_message_id": "x-1.f", "message_id": str(email.id)},
                {"event": "click", "timestamp": 1773144002, "sg_event_id": "sg-2",
                 "message_id": str(email.id), "ip": "203.0.113.9", "useragent": "Firefox",
                 "url": f"https://shop.example/account?name={FIRST}"},
                {"email": "someone@else.example", "event": "delivered", "sg_event_id": "sg-3"},
            ],
            now=now,
        )  # fmt: skip
        apply_twilio_status(
            session,
            {"MessageSid": "SM1", "MessageStatus": "delivered", "To": PHONE,
             "From": "+15005550006", "AccountSid": "AC1"},
            message_id=sms.id,
            now=now,
        )  # fmt: skip
        apply_twilio_inbound(
            session,
            {"MessageSid": "SM2", "From": PHONE, "To": "+15005550006",
             "Body": f"Thanks! {FIRST} {LAST}"},
            settings=app.settings,
            now=now,
        )  # fmt: skip
        session.get_one(Message, sms.id).error = f"twilio 21614: {PHONE} is not a mobile number"
        # Work that failed for good, about the member and about someone else.
        for actor, args, error in [
            ("deliver_message", [sms.id], f"gave up after 8 attempts: 'To' {PHONE} invalid"),
            ("process_event", [order_id], f"IntegrityError: Key (email)=({EMAIL}) exists"),
            ("crm_push", ["hubspot"], f"hubspot refused {EMAIL.lower()}: conflict"),
            ("run_enrollment", [referrer_enrollment], "RuntimeError: boom"),
            # Work queued in batches names the member's ids among others'.
            (
                "run_enrollments",
                [[referrer_enrollment, member_enrollment]],
                f"KeyError: {FIRST} {LAST}",
            ),
            ("deliver_messages", [[email.id, sms.id]], f"ValueError: Dear {FIRST}"),
            ("process_events", [[referral_event.id, order_id]], f"ValueError: {LAST}"),
            ("create_reward_codes", [[999]], "ValueError: not theirs"),
        ]:
            session.add(
                DeadLetter(
                    message_id=f"dl-{actor}",
                    queue="q",
                    actor=actor,
                    args={"args": args, "kwargs": {}},
                    error=error,
                    failed_at=now,
                )
            )
        session.add(
            Survey(
                member_id=member_id,
                kind="nps",
                channel="email",
                token="t-erase",
                score=9,
                comment=f"Ask for {FIRST} at the Kraków store",
                sent_at=now,
                answered_at=now,
            )
        )
        session.add(
            CrmLink(
                member_id=member_id,
                crm="hubspot",
                crm_id="501",
                pushed_values={"email": EMAIL, "firstname": FIRST},
                error=f"contact {EMAIL} exists",
            )
        )
        session.add(SyncCursor(crm="hubspot", direction="push", last_error=f"{EMAIL}: refused"))
    assert len(personal(database_text(app))) > 10

    env = {"DATABASE_URL": app.database.url, "OUTBOX_DIR": str(app.settings.outbox_dir)}
    result = CliRunner().invoke(main, ["members", "erase", "m-1", "--yes"], env=env)

    assert result.exit_code == 0, result.output
    assert "2 outbox file(s) removed" in result.output
    with app.database.transaction() as session:  # the providers report late
        late = {"email": EMAIL, "event": "open", "sg_event_id": "sg-4", "ip": "203.0.113.9"}
        apply_sendgrid_events(session, [{**late, "message_id": str(email.id)}], now=now)
        status = {"MessageSid": sms.provider_id or "", "MessageStatus": "read", "To": PHONE}
        apply_twilio_status(session, status, message_id=sms.id, now=now)
    assert personal(database_text(app)) == []
    assert personal(outbox_text(app.settings.outbox_dir)) == []
    with app.database.sessions() as session:
        # What the ledger and the provider bookkeeping need stays.
        order = session.get_one(Event, order_id)
        assert order.payload == {"order_id": "1001", "total": "40", "currency": "EUR"}
        assert session.scalar(select(LedgerEntry.delta).where(LedgerEntry.event_id == order_id))
        referral_event = session.get_one(Event, referral_event.id)
        assert referral_event.payload["referee"] == "m-1"
        assert "referee_first_name" not in referral_event.payload
        kept = {
            e.provider_event_id: e.payload
            for e in session.scalars(select(ProviderEvent).order_by(ProviderEvent.id))
        }
        assert kept["sg-1"] == {
            "event": "delivered",
            "timestamp": 1773144001,
            "sg_event_id": "sg-1",
            "sg_message_id": "x-1.f",
            "message_id": str(email.id),
        }
        assert set(kept["sg-2"]) == {"event", "timestamp", "sg_event_id", "message_id"}
        assert kept["sg-3"]["email"] == "someone@else.example"  # not theirs: untouched
        assert kept["SM1:delivered"]["MessageStatus"] == "delivered"
        assert kept["SM2"] == {"MessageSid": "SM2"}
        assert kept["sg-4"] == {"event": "open", "sg_event_id": "sg-4", "message_id": str(email.id)}
        assert {e.member_id: e.context for e in session.scalars(select(Enrollment))}[
            member_id
        ] == {}
        dead = {d.actor: d for d in session.scalars(select(DeadLetter))}
        assert dead["deliver_message"].args == {"args": [sms.id], "kwargs": {}}
        assert dead["crm_push"].error == "hubspot refused [erased]: conflict"
        assert dead["run_enrollment"].error == "RuntimeError: boom"
        batch = dead["run_enrollments"]
        assert batch.args == {"args": [[referrer_enrollment, member_enrollment]], "kwargs": {}}
        assert (
            batch.error
            == dead["deliver_messages"].error
            == "[erased with the member's personal data]"
        )
        assert dead["process_events"].error == "[erased with the member's personal data]"
        assert dead["create_reward_codes"].error == "ValueError: not theirs"  # not their work
        survey = session.scalar(select(Survey).where(Survey.token == "t-erase"))
        assert survey is not None and survey.score == 9
        assert [m.state for m in session.scalars(select(Message).order_by(Message.id))][:2] == [
            "sent",
            "sent",
        ]


def test_dead_letter_actors_named_by_erasure_exist() -> None:
    from automations.runtime.actors import _ACTORS

    assert set(WORK_ABOUT) <= set(_ACTORS)
