"""What the program adds to messages, in the message's language; Babel's numbers and dates."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from channels.segments import measure
from channels.system_texts import system_texts
from loyalty.app import App
from loyalty.event_types import EventInput
from tests.engine.helpers import journey_folder, published, send_event
from tests.factories import make_member

JOURNEY = """
id: hello
name: Hello
status: active
locales: [en, pl]
trigger: {type: event, event: order.completed}
entry: {every_time: true}
steps:
  - {id: text, type: send_sms, template: hello}
"""


@pytest.mark.parametrize(
    ("locale", "body"),
    [
        ("pl-PL", "Cześć! Poziom: Brązowy. Rezygnacja: odpowiedz STOP."),
        ("xx", "Hi! Tier: Bronze. Reply STOP to opt out."),
    ],
)
def test_the_first_marketing_sms_names_the_tier_and_how_to_stop_in_the_members_language(
    app: App, tmp_path: Path, locale: str, body: str
) -> None:
    templates = {
        "en/hello.sms": "Hi! Tier: {{ tier_name }}.",
        "pl/hello.sms": "Cześć! Poziom: {{ tier_name }}.",
    }
    published(app, journey_folder(tmp_path, {"hello": JOURNEY}, templates))
    app.settings = app.settings.model_copy(update={"sms_quiet_hours": ""})
    make_member(app, external_id="m-1", phone="+48600100200", sms_consent=True, locale=locale)

    send_event(
        app,
        EventInput(
            "order.completed",
            "m-1",
            id="o-1",
            data={"order_id": "1", "total": 5, "currency": "PLN"},
        ),
    )

    [sent] = [json.loads(p.read_text()) for p in app.settings.outbox_dir.rglob("*.json")]
    assert sent["body"] == body


def test_the_polish_opt_out_wording_stays_within_gsm_7() -> None:
    # Polish letters would make the whole SMS UCS-2: 70 characters a part instead of 160.
    wording = system_texts(None, "pl", "en")("sms.opt_out", program="Klub")
    assert measure(wording).encoding == "GSM-7"
    assert measure(f"Masz 100 pkt. {wording}").segments == 1


@pytest.mark.parametrize(
    ("locale", "number", "day"),
    [
        ("pl", "1\u00a0250", "31 grudnia 2026"),
        ("pl-PL", "1\u00a0250", "31 grudnia 2026"),
        ("en", "1,250", "December 31, 2026"),
        ("xx", "1,250", "December 31, 2026"),
    ],
)
def test_numbers_and_dates_are_written_the_way_the_language_writes_them(
    locale: str, number: str, day: str
) -> None:
    texts = system_texts(None, locale, "en")
    assert texts.number(1250) == number
    assert texts.date(date(2026, 12, 31)) == day
    assert texts.date(datetime(2026, 12, 31, 9, tzinfo=UTC)) == day


@pytest.mark.parametrize(
    ("count", "word"),
    [(1, "punkt"), (2, "punkty"), (5, "punktów"), (22, "punkty"), (25, "punktów")],
)
def test_polish_plurals_follow_babels_rules(count: int, word: str) -> None:
    texts = system_texts(None, "pl", "en")
    said = texts("unsubscribe.points", count=count, points=texts.number(count), program="Klub")
    assert said.endswith(f"masz {count} {word}.")


def test_tier_names_come_in_the_members_language() -> None:
    assert system_texts(None, "pl", "en").tier("gold") == "Złoty"
    assert system_texts(None, "en", "en").tier("gold") == "Gold"
    assert system_texts(None, "pl", "en").tier("platinum") == "platinum"  # no name: its id


def test_an_override_adds_a_language_and_a_tier_name(tmp_path: Path) -> None:
    folder = tmp_path / "_system" / "de"
    folder.mkdir(parents=True)
    (folder / "texts.yaml").write_text(
        "tiers:\n  gold: Gold-Stufe\nsms:\n  opt_out: STOP zum Abmelden.\n", encoding="utf-8"
    )
    texts = system_texts(tmp_path, "de-AT", "en")
    assert texts.locale == "de"
    assert texts.tier("gold") == "Gold-Stufe"
    assert texts("sms.opt_out", program="Klub") == "STOP zum Abmelden."
    assert texts("sms.help", program="Klub", support="s", frequency="f").startswith("Klub: help")
    assert texts.number(1250) == "1.250"


@pytest.mark.parametrize("keyword", ["stop", "start", "help"])
def test_the_polish_keyword_replies_cost_at_most_two_segments(keyword: str) -> None:
    # Polish letters make them UCS-2 (67 characters a part when split): kept short.
    reply = system_texts(None, "pl", "en")(
        f"sms.{keyword}",
        program="Loyalty Club",
        support="support@example.com",
        frequency="up to 4 msgs/month",
    )
    size = measure(reply)
    assert (size.encoding, size.segments) == ("UCS-2", 2)
