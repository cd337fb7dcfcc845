"""Pages and SMS replies in the member's language: `pl`, `pl-PL`, an unknown locale, overrides."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from html import unescape
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from loyalty.app import App
from loyalty.ledger import apply
from loyalty.models import Member, Survey
from tests.factories import make_member
from tests.web.support import consents, inbound_params, load, make_message, post_twilio
from web.app import create_app

TOKEN = "tok_9f3c1a7e5b2d4c6e8a0b"
SURVEY = "srv_1e5a9c3f7b2d6e0a4c8b"
PHONE = "+48600100300"
INBOUND = "/webhooks/twilio/inbound"
#: Babel writes Polish thousands with a no-break space.
NBSP = "\u00a0"
#: The dash Polish puts between clauses.
DASH = "\u2013"


def member_with_points(app: App, locale: str | None, **fields: object) -> Member:
    """A subscribed member with 1250 points, 300 of them expiring on 31 December 2026."""
    member = make_member(
        app,
        email="ola@example.com",
        email_consent=True,
        locale=locale,
        time_zone="Europe/Warsaw",
        **fields,
    )
    now = app.clock.now()
    thresholds = app.settings.tier_thresholds
    with app.database.transaction() as session:
        row = session.get_one(Member, member.id)
        apply(session, row, "earn", 950, key="a", reason="order", now=now, thresholds=thresholds)
        apply(
            session,
            row,
            "earn",
            300,
            key="b",
            reason="order",
            now=now,
            thresholds=thresholds,
            expires_at=datetime(2026, 12, 31, 12, tzinfo=UTC),
        )
    return member


def text_of(html: str) -> str:
    """What a reader sees: the page without tags."""
    return unescape(re.sub(r"<[^>]+>", "", html))


def lang(html: str) -> str:
    found = re.search(r'<html lang="([^"]+)"', html)
    assert found is not None
    return found.group(1)


@pytest.mark.parametrize("locale", ["pl", "pl-PL"])
def test_a_polish_members_unsubscribe_page_is_in_polish(
    client: TestClient, web_app: App, locale: str
) -> None:
    member = member_with_points(web_app, locale)
    make_message(web_app, member, unsubscribe_token=TOKEN)

    page = client.get(f"/u/{TOKEN}")

    assert page.status_code == 200
    assert lang(page.text) == "pl"
    seen = text_of(page.text)
    assert "Acme Rewards: rezygnacja z wiadomości" in seen
    assert "Wypisz się" in seen
    assert f"masz 1{NBSP}250 punktów" in seen
    assert "300 punktów wygasa 31 grudnia 2026." in seen
    assert "Unsubscribe" not in seen

    done = client.post(f"/u/{TOKEN}", content=b"List-Unsubscribe=One-Click")

    assert done.status_code == 200
    assert "Wypisaliśmy Cię" in text_of(done.text)
    assert "Acme Rewards nie będzie już wysyłać Ci e-maili marketingowych." in text_of(done.text)
    assert consents(web_app) == [(member.id, "email", False, "unsubscribe_link")]


def test_a_member_with_an_unknown_locale_gets_english(client: TestClient, web_app: App) -> None:
    member = member_with_points(web_app, "xx")
    make_message(web_app, member, unsubscribe_token=TOKEN)

    page = client.get(f"/u/{TOKEN}")

    assert lang(page.text) == "en"
    seen = text_of(page.text)
    assert "Unsubscribe from Acme Rewards" in seen
    assert "you have 1,250 points." in seen
    assert "300 of them expire on December 31, 2026." in seen


def test_a_member_without_a_locale_gets_the_programs_default(web_app: App) -> None:
    member = member_with_points(web_app, None)
    make_message(web_app, member, unsubscribe_token=TOKEN)
    settings = web_app.settings.model_copy(update={"default_locale": "pl"})

    with TestClient(create_app(App(settings, web_app.database, web_app.clock))) as client:
        page = client.get(f"/u/{TOKEN}")

    assert "Acme Rewards: rezygnacja z wiadomości" in text_of(page.text)


def test_one_point_is_singular_in_both_languages(client: TestClient, web_app: App) -> None:
    polish = make_member(web_app, email="a@example.com", email_consent=True, locale="pl")
    english = make_member(web_app, email="b@example.com", email_consent=True, locale="en")
    for member, token in ((polish, TOKEN), (english, TOKEN.upper())):
        with web_app.database.transaction() as session:
            row = session.get_one(Member, member.id)
            apply(
                session,
                row,
                "earn",
                1,
                key=f"one-{member.id}",
                reason="x",
                now=web_app.clock.now(),
                thresholds=web_app.settings.tier_thresholds,
            )
        make_message(web_app, member, unsubscribe_token=token)

    assert "masz 1 punkt." in text_of(client.get(f"/u/{TOKEN}").text)
    assert "you have 1 point." in text_of(client.get(f"/u/{TOKEN.upper()}").text)


def make_survey(app: App, member: Member, kind: str = "nps", channel: str = "email") -> Survey:
    with app.database.transaction() as session:
        survey = Survey(
            member_id=member.id, kind=kind, channel=channel, token=SURVEY, sent_at=app.clock.now()
        )
        session.add(survey)
    return survey


@pytest.mark.parametrize("locale", ["pl", "pl-PL"])
def test_a_polish_members_survey_page_is_in_polish(
    client: TestClient, web_app: App, locale: str
) -> None:
    survey = make_survey(web_app, make_member(web_app, locale=locale))

    page = client.get(f"/s/{SURVEY}")

    assert page.status_code == 200
    assert lang(page.text) == "pl"
    seen = text_of(page.text)
    assert "Acme Rewards: krótkie pytanie" in seen
    assert "Jak bardzo prawdopodobne jest, że polecisz nas znajomym?" in seen
    assert f"0 oznacza „zdecydowanie nie polecę”, 10 {DASH} „na pewno polecę”." in seen
    assert "Komentarz (opcjonalnie)" in seen

    confirm = text_of(client.get(f"/s/{SURVEY}?score=9").text)
    assert "Twoja ocena: 9." in confirm and "Wyślij odpowiedź: 9" in confirm

    refused = client.post(f"/s/{SURVEY}", data={"score": "11"})
    assert refused.status_code == 400
    assert "Wybierz liczbę całkowitą od 0 do 10." in text_of(refused.text)

    saved = client.post(f"/s/{SURVEY}", data={"score": "9"})
    assert saved.status_code == 200
    assert "Zapisaliśmy Twoją odpowiedź. Chcesz powiedzieć nam coś więcej?" in text_of(saved.text)
    assert load(web_app, Survey, survey.id).score == 9


def test_a_survey_of_a_member_with_an_unknown_locale_is_in_english(
    client: TestClient, web_app: App
) -> None:
    make_survey(web_app, make_member(web_app, locale="xx"), kind="csat")

    page = client.get(f"/s/{SURVEY}")

    assert lang(page.text) == "en"
    assert "How satisfied are you?" in text_of(page.text)
    assert "Thank you from Acme Rewards" in text_of(
        client.post(f"/s/{SURVEY}", data={"score": "5", "comment": "ok"}).text
    )


@pytest.fixture
def overridden(web_app: App, tmp_path: Path) -> Iterator[TestClient]:
    """The program with a marketer's Polish texts in journeys/templates/_system/pl/."""
    folder = tmp_path / "journeys" / "templates" / "_system" / "pl"
    folder.mkdir(parents=True)
    (folder / "texts.yaml").write_text(
        "unsubscribe:\n"
        '  button: "Nie chcę już newslettera"\n'
        "  points:\n"
        '    other: "Zostaje Ci {{ points }} pkt w {{ program }}."\n'
        "survey:\n"
        '  title: "{{ nieznana }}"\n',  # cannot render: the shipped text is shown
        encoding="utf-8",
    )
    settings = web_app.settings.model_copy(update={"journeys_dir": tmp_path / "journeys"})
    with TestClient(create_app(App(settings, web_app.database, web_app.clock))) as client:
        yield client


def test_a_marketers_override_replaces_only_the_texts_it_gives(
    overridden: TestClient, web_app: App
) -> None:
    member = member_with_points(web_app, "pl-PL")
    make_message(web_app, member, unsubscribe_token=TOKEN)
    make_survey(web_app, member)

    seen = text_of(overridden.get(f"/u/{TOKEN}").text)

    assert "Nie chcę już newslettera" in seen and "Wypisz się" not in seen
    assert f"Zostaje Ci 1{NBSP}250 pkt w Acme Rewards." in seen
    assert "Acme Rewards: rezygnacja z wiadomości" in seen  # not overridden: shipped
    assert "Acme Rewards: krótkie pytanie" in text_of(overridden.get(f"/s/{SURVEY}").text)


def test_a_referral_link_that_names_no_one_speaks_the_browsers_language(
    client: TestClient,
) -> None:
    polish = client.get("/r/NOSUCHCODE", headers={"Accept-Language": "de;q=0.9, pl-PL"})
    other = client.get("/r/NOSUCHCODE", headers={"Accept-Language": "fr-FR"})

    assert polish.status_code == other.status_code == 404
    assert lang(polish.text) == "pl"
    assert "Nie znaleziono linku" in text_of(polish.text)
    assert "Nadal możesz odwiedzić Acme Rewards" in text_of(polish.text)
    assert lang(other.text) == "en"
    assert "Link not found" in text_of(other.text)


@pytest.mark.parametrize(
    ("keyword", "reply"),
    [
        (
            "STOP",
            "Acme Rewards: wypisaliśmy Twój numer, nie wyślemy już SMS-ów. "
            "Aby wrócić, odpowiedz START.",
        ),
        (
            "start",
            "Acme Rewards: Twój numer jest znów zapisany. Koszt SMS wg taryfy operatora. "
            "Pomoc: odpowiedz HELP, rezygnacja: STOP.",
        ),
        (
            "Help",
            f"Acme Rewards: pomoc {DASH} help@acme.example. Koszt SMS wg taryfy operatora. "
            "Rezygnacja: odpowiedz STOP.",
        ),
    ],
)
def test_sms_keywords_are_answered_in_polish(
    client: TestClient, web_app: App, keyword: str, reply: str
) -> None:
    member = make_member(web_app, phone=PHONE, sms_consent=keyword != "start", locale="pl-PL")

    response = post_twilio(client, INBOUND, inbound_params(keyword, PHONE))

    assert response.status_code == 200
    assert f"<Message>{reply}</Message>" in response.text
    assert load(web_app, Member, member.id).sms_consent is (keyword != "STOP")


def test_an_unknown_number_is_answered_in_the_programs_language(
    client: TestClient, web_app: App
) -> None:
    response = post_twilio(client, INBOUND, inbound_params("HELP", "+48600999999"))

    assert "<Message>Acme Rewards: help at help@acme.example. Up to 4 msgs/month." in response.text


def test_a_survey_answered_by_sms_is_thanked_in_polish(client: TestClient, web_app: App) -> None:
    member = make_member(web_app, phone=PHONE, sms_consent=True, locale="pl")
    survey = make_survey(web_app, member, channel="sms")

    response = post_twilio(client, INBOUND, inbound_params("9", PHONE))

    assert "<Message>Acme Rewards: dziękujemy za odpowiedź!</Message>" in response.text
    assert load(web_app, Survey, survey.id).score == 9
