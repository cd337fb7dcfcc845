"""Answering surveys on their page and by score links; one `survey.answered` event each.

SMS replies are in `test_survey_replies`."""

from __future__ import annotations

import re
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from automations.runtime.ticks import relay_events
from crm_sync.values import member_values
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.errors import InvalidEventError
from loyalty.event_types import EventInput
from loyalty.events import record_event
from loyalty.models import Event, Member, Survey
from tests.engine.helpers import enrollments, journey_folder, published, send_event, workers
from tests.factories import make_member
from tests.web.support import (
    PUBLIC_BASE_URL,
    load,
    snapshot,
)
from tests.web.survey_support import (
    TOKEN,
    answered_events,
    make_survey,
    survey_member,
    survey_state,
)


@pytest.fixture
def member(web_app: App) -> Member:
    return survey_member(web_app)


@pytest.fixture
def survey(web_app: App, member: Member) -> Survey:
    return make_survey(web_app, member)


# -- the page ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "question", "scores"),
    [
        ("nps", "How likely are you to recommend us to a friend?", range(0, 11)),
        ("csat", "How satisfied are you?", range(1, 6)),
    ],
)
def test_the_page_asks_the_question_with_a_button_per_score(
    client: TestClient,
    web_app: App,
    member: Member,
    kind: str,
    question: str,
    scores: range,
) -> None:
    make_survey(web_app, member, kind=kind)
    before = snapshot(web_app), survey_state(web_app)

    response = client.get(f"/s/{TOKEN}")

    assert response.status_code == 200
    assert "A quick question from Acme Rewards" in response.text
    assert f"<legend>{question}</legend>" in response.text
    buttons = re.findall(r'<button type="submit" name="score" value="(\d+)">', response.text)
    assert buttons == [str(n) for n in scores]
    assert '<form method="post">' in response.text
    assert '<label for="comment">' in response.text and 'maxlength="2000"' in response.text
    assert "ada@example.com" not in response.text and "Ada" not in response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert (snapshot(web_app), survey_state(web_app)) == before


def test_the_page_escapes_the_program_name(web_app: App, survey: Survey) -> None:
    from web.app import create_app

    settings = web_app.settings.model_copy(update={"program_name": "<b>Acme</b> & Co"})
    with TestClient(create_app(App(settings, web_app.database, web_app.clock))) as client:
        text = client.get(f"/s/{TOKEN}").text
        thanks = client.get(f"/s/{TOKEN}?score=9").text
    for page in (text, thanks):
        assert "<b>Acme</b>" not in page
        assert "&lt;b&gt;Acme&lt;/b&gt; &amp; Co" in page


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_score_link_records_nothing_and_shows_a_button_that_posts_the_score(
    client: TestClient, web_app: App, survey: Survey, method: str
) -> None:
    # Mail scanners and link previews follow every link: only a person's POST answers.
    before = snapshot(web_app), survey_state(web_app)

    response = client.request(method, f"/s/{TOKEN}?score=9")

    assert response.status_code == 200
    assert (snapshot(web_app), survey_state(web_app)) == before
    assert answered_events(web_app) == []
    if method == "GET":
        assert "You chose <strong>9</strong>." in response.text
        assert re.search(
            r'<form method="post"><input type="hidden" name="score" value="9">'
            r'<button type="submit">Send my answer: 9</button></form>',
            response.text,
        )
        assert f'<a href="/s/{TOKEN}">Choose another number</a>' in response.text


def test_the_button_of_a_score_link_records_the_score_and_offers_the_comment_box(
    client: TestClient, web_app: App, survey: Survey
) -> None:
    client.cookies.clear()
    link_page = client.get(f"/s/{TOKEN}?score=9").text
    [score] = re.findall(r'<input type="hidden" name="score" value="(\d+)">', link_page)

    response = client.post(f"/s/{TOKEN}", data={"score": score})

    assert response.status_code == 200
    assert "Thank you from Acme Rewards" in response.text
    assert '<input type="hidden" name="score" value="9">' in response.text
    assert '<textarea id="comment" name="comment"' in response.text
    row = load(web_app, Survey, survey.id)
    assert (row.score, row.comment, row.answered_at) == (9, None, web_app.clock.now())
    [event] = answered_events(web_app)
    assert (event.source, event.external_id, event.member_id) == (
        "loyalty",
        f"survey:{survey.id}",
        survey.member_id,
    )
    assert event.payload == {
        "kind": "nps",
        "score": 9,
        "survey_id": survey.id,
        "category": "promoter",
    }
    # Stored in the answer's transaction; the scheduler's relay queues it to the workers.
    assert event.processed_at is None


def test_a_post_records_the_score_and_the_comment_without_cookies(
    client: TestClient, web_app: App, survey: Survey
) -> None:
    client.cookies.clear()

    response = client.post(
        f"/s/{TOKEN}", data={"score": "6", "comment": "  Delivery took <b>ages</b>.\x00 "}
    )

    assert response.status_code == 200
    assert "Your answer and comment are saved." in response.text
    assert "ages" not in response.text  # the comment is not shown back
    row = load(web_app, Survey, survey.id)
    assert (row.score, row.comment) == (6, "Delivery took <b>ages</b>.")
    [event] = answered_events(web_app)
    assert (event.payload["score"], event.payload["category"]) == (6, "detractor")


def test_a_csat_answer_has_no_nps_category(
    client: TestClient, web_app: App, member: Member
) -> None:
    survey = make_survey(web_app, member, kind="csat")
    client.post(f"/s/{TOKEN}", data={"score": "5", "comment": ""})
    [event] = answered_events(web_app)
    assert event.payload == {"kind": "csat", "score": 5, "survey_id": survey.id}


def test_answering_again_replaces_the_answer_without_a_second_event(
    client: TestClient, web_app: App, clock: FrozenClock, survey: Survey
) -> None:
    client.post(f"/s/{TOKEN}", data={"score": "7"})
    clock.advance(timedelta(minutes=5))
    client.post(f"/s/{TOKEN}", data={"score": "8", "comment": "Nice staff"})
    clock.advance(timedelta(minutes=5))

    client.post(f"/s/{TOKEN}", data={"score": "10"})  # a link's button: the comment stays

    row = load(web_app, Survey, survey.id)
    assert (row.score, row.comment, row.answered_at) == (10, "Nice staff", clock.now())
    [event] = answered_events(web_app)
    assert (event.payload["score"], event.payload["category"]) == (7, "passive")

    client.post(f"/s/{TOKEN}", data={"score": "10", "comment": ""})  # an emptied box clears it
    assert load(web_app, Survey, survey.id).comment is None
    assert len(answered_events(web_app)) == 1


@pytest.mark.parametrize("score", ["11", "-1", "abc", "", "9.5", "1e1", "٣", "007", None])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_bad_score_gets_a_400_page_and_changes_nothing(
    client: TestClient, web_app: App, survey: Survey, score: str | None, method: str
) -> None:
    before = snapshot(web_app), survey_state(web_app)
    if method == "GET":
        query = "?score" if score is None else f"?score={score}"
        response = client.get(f"/s/{TOKEN}{query}")
    else:
        fields = {"comment": "hello"} if score is None else {"score": score, "comment": "hello"}
        response = client.post(f"/s/{TOKEN}", data=fields)
    assert response.status_code == 400
    assert 'role="alert">Choose a whole number from 0 to 10.' in response.text
    assert '<form method="post">' in response.text  # the question again, to choose anew
    assert (snapshot(web_app), survey_state(web_app)) == before
    assert answered_events(web_app) == []


@pytest.mark.parametrize("score", ["0", "6"])
def test_a_csat_score_off_its_scale_gets_a_400(
    client: TestClient, web_app: App, member: Member, score: str
) -> None:
    make_survey(web_app, member, kind="csat")
    response = client.post(f"/s/{TOKEN}", data={"score": score})
    assert response.status_code == 400
    assert "from 1 to 5" in response.text
    assert answered_events(web_app) == []


def test_a_comment_longer_than_2000_characters_gets_a_400(
    client: TestClient, web_app: App, survey: Survey
) -> None:
    too_long = client.post(f"/s/{TOKEN}", data={"score": "9", "comment": "x" * 2001})
    assert too_long.status_code == 400
    assert "at most 2,000 characters" in too_long.text
    assert survey_state(web_app) == [(survey.id, None, None, None)]

    just_right = client.post(f"/s/{TOKEN}", data={"score": "9", "comment": "x" * 2000})
    assert just_right.status_code == 200
    assert load(web_app, Survey, survey.id).comment == "x" * 2000


def test_a_body_over_the_limit_gets_a_413(client: TestClient, web_app: App, survey: Survey) -> None:
    response = client.post(f"/s/{TOKEN}", data={"score": "9", "comment": "x" * 40_000})
    assert response.status_code == 413
    assert survey_state(web_app) == [(survey.id, None, None, None)]


@pytest.mark.parametrize("token", ["nope", "x" * 65, TOKEN.upper()])
@pytest.mark.parametrize("how", ["page", "link", "post"])
def test_an_unknown_token_gets_a_404_page(
    client: TestClient, web_app: App, survey: Survey, token: str, how: str
) -> None:
    before = snapshot(web_app), survey_state(web_app)
    if how == "post":
        response = client.post(f"/s/{token}", data={"score": "9"})
    else:
        response = client.get(f"/s/{token}" + ("?score=9" if how == "link" else ""))
    assert response.status_code == 404
    assert "Survey not found" in response.text
    assert (snapshot(web_app), survey_state(web_app)) == before


def test_an_erased_members_survey_is_not_found(
    client: TestClient, web_app: App, survey: Survey, member: Member
) -> None:
    with web_app.database.transaction() as session:
        row = session.get(Member, member.id)
        assert row is not None
        row.erased_at = web_app.clock.now()
    assert client.get(f"/s/{TOKEN}").status_code == 404
    assert client.post(f"/s/{TOKEN}", data={"score": "9"}).status_code == 404
    assert answered_events(web_app) == []


def test_the_crm_fields_show_the_last_nps_answer(
    client: TestClient, web_app: App, clock: FrozenClock, member: Member
) -> None:
    make_survey(web_app, member, token="older")
    make_survey(web_app, member, token="newer")
    make_survey(web_app, member, kind="csat", token="csat")
    client.post("/s/older", data={"score": "4"})
    clock.advance(timedelta(days=1))
    client.post("/s/newer", data={"score": "8"})
    clock.advance(timedelta(days=1))
    client.post("/s/csat", data={"score": "5"})

    with web_app.database.sessions() as session:
        row = session.get(Member, member.id)
        assert row is not None
        values = member_values(session, [row], now=clock.now(), public_base_url=PUBLIC_BASE_URL)
    fields = values[member.id]
    assert (fields["last_nps_score"], fields["last_nps_at"]) == (
        8,
        clock.now() - timedelta(days=1),
    )


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "ces", "score": 3},
        {"kind": ["nps"], "score": 3},
        {"kind": "nps", "score": 11},
        {"kind": "nps", "score": "9"},
        {"kind": "nps", "score": True},
        {"kind": "csat", "score": 0},
        {"kind": "csat"},
    ],
)
def test_a_survey_answered_event_needs_a_kind_and_a_score_on_its_scale(
    web_app: App, member: Member, data: dict[str, Any]
) -> None:
    event = EventInput("survey.answered", member.external_id, id="x", data=data)
    with pytest.raises(InvalidEventError), web_app.database.transaction() as session:
        record_event(session, event, settings=web_app.settings, now=web_app.clock.now())


# -- end to end -------------------------------------------------------------------------

NPS_JOURNEY = """
id: welcome_nps
name: Welcome NPS
status: active
trigger: {type: event, event: member.enrolled}
entry: {once: true}
steps:
  - id: ask
    type: send_survey
    survey: nps
    channel: email
    template: nps
  - id: await_answer
    type: wait
    until_event: {event: survey.answered, timeout: 3d}
    on_event: sort
    on_timeout: others
  - id: sort
    type: branch
    if: {field: event.category, eq: promoter}
    then: promoters
    else: others
  - id: promoters
    type: exit
    reason: promoter
  - id: others
    type: exit
    reason: not a promoter
"""
NPS_TEMPLATES = {
    "en/nps.email": """---
subject: "One question"
---
<p>How likely are you to recommend us? <a href="{{ survey_url }}">Answer</a></p>
""",
}


def test_a_journey_survey_answered_on_the_page_reaches_the_journey(
    client: TestClient, web_app: App, clock: FrozenClock, tmp_path: Path
) -> None:
    published(web_app, journey_folder(tmp_path, {"welcome_nps": NPS_JOURNEY}, NPS_TEMPLATES))
    make_member(web_app, external_id="m-1", email="ada@example.com", email_consent=True)

    send_event(web_app, EventInput("member.enrolled", "m-1", id="e-1"))

    [enrollment] = enrollments(web_app)
    assert (enrollment.state, enrollment.current_step) == ("waiting", "await_answer")
    eml = next(web_app.settings.outbox_dir.rglob("*.eml")).read_bytes()
    mail = message_from_bytes(eml, policy=policy.default)
    assert isinstance(mail, EmailMessage)
    html = mail.get_body(("html",))
    assert html is not None
    found = re.search(re.escape(PUBLIC_BASE_URL) + r"/s/([A-Za-z0-9_-]+)", html.get_content())
    assert found is not None
    path = found.group(0).removeprefix(PUBLIC_BASE_URL)

    response = client.post(path, data={"score": "10", "comment": "Love it"})

    assert response.status_code == 200
    with web_app.database.sessions() as session:
        survey = session.scalar(select(Survey))
        assert survey is not None
        assert (survey.token, survey.score, survey.comment) == (found.group(1), 10, "Love it")
        assert survey.enrollment_id == enrollment.id
    [event] = answered_events(web_app)
    assert event.payload["category"] == "promoter"

    # The scheduler's relay queues the stored event; the waiting journey branches on it.
    clock.advance(timedelta(seconds=web_app.settings.event_relay_after_seconds))
    with workers(web_app):
        assert relay_events(web_app) == 1
    assert load(web_app, Event, event.id).processed_at is not None
    [enrollment] = enrollments(web_app)
    assert (enrollment.state, enrollment.exit_reason) == ("exited", "promoter")
