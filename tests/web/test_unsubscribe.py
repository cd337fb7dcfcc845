"""One-click unsubscribe: GET confirms, POST (no cookies, no auth) revokes email marketing."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from loyalty.app import App
from loyalty.erasure import erase_member
from loyalty.models import Member, Message
from tests.factories import make_member
from tests.web.support import consents, load, make_message, snapshot

TOKEN = "tok_3b1f0c9e7a5d4e2f8a6b"
ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def message(web_app: App) -> Message:
    member = make_member(web_app, email="ada@example.com", email_consent=True)
    return make_message(web_app, member, unsubscribe_token=TOKEN)


def test_get_shows_a_confirmation_and_changes_nothing(
    client: TestClient, web_app: App, message: Message
) -> None:
    before = snapshot(web_app)
    response = client.get(f"/u/{TOKEN}")
    assert response.status_code == 200
    assert '<form method="post">' in response.text
    assert "Unsubscribe from Acme Rewards" in response.text
    assert "ada@example.com" not in response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert snapshot(web_app) == before


def test_a_head_request_from_a_link_scanner_changes_nothing(
    client: TestClient, web_app: App, message: Message
) -> None:
    before = snapshot(web_app)
    response = client.head(f"/u/{TOKEN}")
    assert response.status_code == 200
    assert snapshot(web_app) == before


def test_one_click_post_revokes_email_marketing_consent(
    web_app: App, client: TestClient, message: Message
) -> None:
    client.cookies.clear()
    response = client.post(f"/u/{TOKEN}", content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    assert response.status_code == 200
    assert "You are unsubscribed" in response.text
    member = load(web_app, Member, message.member_id)
    assert (member.email_consent, member.sms_consent) == (False, None)
    assert consents(web_app) == [(member.id, "email", False, "unsubscribe_link")]
    assert load(web_app, Message, message.id).state == "sent"


def test_the_button_post_with_an_empty_body_works_too(
    web_app: App, client: TestClient, message: Message
) -> None:
    assert client.post(f"/u/{TOKEN}").status_code == 200
    assert load(web_app, Member, message.member_id).email_consent is False


def test_repeating_the_unsubscribe_is_harmless(
    web_app: App, client: TestClient, message: Message
) -> None:
    for _ in range(3):
        response = client.post(f"/u/{TOKEN}", content=b"List-Unsubscribe=One-Click")
        assert response.status_code == 200
    assert len(consents(web_app)) == 1


@pytest.mark.parametrize("token", ["nope", "x" * 65, TOKEN.upper()])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_unknown_token_gets_a_404_page(
    web_app: App, client: TestClient, message: Message, token: str, method: str
) -> None:
    before = snapshot(web_app)
    response = client.request(method, f"/u/{token}")
    assert response.status_code == 404
    assert "Link not found" in response.text
    assert snapshot(web_app) == before


def test_the_page_escapes_the_program_name(web_app: App, message: Message) -> None:
    from web.app import create_app

    settings = web_app.settings.model_copy(update={"program_name": "<b>Acme</b> & Co"})
    with TestClient(create_app(App(settings, web_app.database, web_app.clock))) as client:
        text = client.get(f"/u/{TOKEN}").text
    assert "<b>Acme</b>" not in text
    assert "&lt;b&gt;Acme&lt;/b&gt; &amp; Co" in text


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_erased_members_link_shows_a_neutral_page_and_changes_nothing(
    web_app: App, client: TestClient, method: str
) -> None:
    member = make_member(web_app, email="grace@example.com", first_name="Grace", last_name="Hopper")
    make_message(web_app, member, unsubscribe_token=TOKEN)
    with web_app.database.transaction() as session:
        erase_member(session, session.get_one(Member, member.id), now=web_app.clock.now())
    before = snapshot(web_app)

    response = client.request(method, f"/u/{TOKEN}", content=b"List-Unsubscribe=One-Click")

    assert response.status_code == 200
    assert "Nothing to unsubscribe" in response.text
    assert "This address is not subscribed to anything from Acme Rewards." in response.text
    assert "<form" not in response.text and "You are unsubscribed" not in response.text
    for personal in ("grace@example.com", "Grace", "Hopper"):
        assert personal not in response.text
    assert snapshot(web_app) == before
    assert consents(web_app) == []
