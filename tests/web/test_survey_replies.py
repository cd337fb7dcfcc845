"""Answering SMS surveys by reply: a bare score answers the newest open one; any other reply
is stored as before."""

from __future__ import annotations

from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.models import Member, Survey
from tests.web.support import inbound_params, load, post_twilio, provider_events
from tests.web.survey_support import (
    PHONE,
    answered_events,
    make_survey,
    survey_member,
    survey_state,
)

INBOUND = "/webhooks/twilio/inbound"
EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response />'


@pytest.fixture
def member(web_app: App) -> Member:
    return survey_member(web_app)


def test_an_sms_reply_with_a_bare_score_answers_the_newest_open_sms_survey(
    client: TestClient, web_app: App, clock: FrozenClock, member: Member
) -> None:
    now = clock.now()
    older = make_survey(
        web_app, member, channel="sms", token="sms-old", sent_at=now - timedelta(days=3)
    )
    newer = make_survey(
        web_app, member, channel="sms", token="sms-new", sent_at=now - timedelta(days=1)
    )
    make_survey(web_app, member, channel="email", token="mail", sent_at=now)
    params = inbound_params(" 9 ", phone=PHONE)

    response = post_twilio(client, INBOUND, params)

    assert response.status_code == 200
    assert "<Message>Acme Rewards: thank you for your answer!</Message>" in response.text
    assert load(web_app, Survey, newer.id).score == 9
    assert load(web_app, Survey, newer.id).answered_at == now
    assert load(web_app, Survey, older.id).answered_at is None
    [event] = answered_events(web_app)
    assert event.payload == {
        "kind": "nps",
        "score": 9,
        "survey_id": newer.id,
        "category": "promoter",
    }
    [stored] = provider_events(web_app, "twilio")
    assert (stored.kind, stored.applied_at) == ("inbound.message", now)

    clock.advance(timedelta(minutes=1))
    again = post_twilio(client, INBOUND, params)  # Twilio redelivers the same message
    assert again.text == EMPTY
    assert len(answered_events(web_app)) == 1
    assert load(web_app, Survey, newer.id).answered_at == now


@pytest.mark.parametrize(
    ("case", "body"),
    [
        ("no survey", "9"),
        ("email survey only", "9"),
        ("sent 8 days ago", "9"),
        ("answered already", "9"),
        ("words", "9 thanks"),
        ("off the scale", "11"),
        ("csat off its scale", "9"),
        ("another number", "9"),
    ],
)
def test_other_replies_are_stored_as_before(
    client: TestClient, web_app: App, clock: FrozenClock, member: Member, case: str, body: str
) -> None:
    now = clock.now()
    if case == "email survey only":
        make_survey(web_app, member, channel="email")
    elif case == "sent 8 days ago":
        make_survey(web_app, member, channel="sms", sent_at=now - timedelta(days=8))
    elif case == "answered already":
        make_survey(web_app, member, channel="sms", score=3, answered_at=now)
    elif case == "csat off its scale":
        make_survey(web_app, member, channel="sms", kind="csat")
    elif case != "no survey":
        make_survey(web_app, member, channel="sms")
    phone = "+48600999999" if case == "another number" else PHONE
    before = survey_state(web_app)

    response = post_twilio(client, INBOUND, inbound_params(body, phone))

    assert (response.status_code, response.text) == (200, EMPTY)
    assert survey_state(web_app) == before
    assert answered_events(web_app) == []
    [stored] = provider_events(web_app, "twilio")
    assert (stored.kind, stored.applied_at) == ("inbound.message", None)


def test_stop_stays_stop_while_a_survey_is_open(
    client: TestClient, web_app: App, member: Member
) -> None:
    survey = make_survey(web_app, member, channel="sms")
    response = post_twilio(client, INBOUND, inbound_params("STOP", phone=PHONE))
    assert "you are unsubscribed" in response.text
    assert load(web_app, Survey, survey.id).answered_at is None
    assert load(web_app, Member, member.id).sms_consent is False
