"""A journey with two splits: the variant each member got at each split is kept, and
`journeys report` and the console's journey page show every split with its own arms."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner
from pydantic import SecretStr
from sqlalchemy import select
from starlette.testclient import TestClient

from automations.definition import choose_variant
from automations.definition.models import Split, Variant
from cli import main
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.db import downgrade, upgrade
from loyalty.event_types import EventInput
from loyalty.models import Enrollment, Member, SplitChoice
from tests.console.support import SECRET, make_user, sign_in
from tests.engine.helpers import journey_folder, published, send_event
from tests.factories import make_member
from web.app import create_app

TWO = """
id: launch
name: Launch
status: active
trigger: {type: event, event: member.enrolled}
entry: {once: true}
goal: {event: order.completed, within: 10d}
steps:
  - id: subject
    type: split
    variants:
      - {name: plain, percent: 50, next: colour}
      - {name: fancy, percent: 50, next: colour}
  - id: colour
    type: split
    variants:
      - {name: red, percent: 35, next: mail}
      - {name: blue, percent: 35, next: mail}
    holdout: 30
  - {id: mail, type: send_email, template: offer}
"""
BODY = "---\nsubject: Offer\n---\n<p>{{ member.external_id }}</p>\n"
MEMBERS = [f"m{i:02d}" for i in range(24)]
SUBJECT = Split(
    id="subject",
    type="split",
    variants=[
        Variant(name="plain", percent=50, next="colour"),
        Variant(name="fancy", percent=50, next="colour"),
    ],
)
COLOUR = Split(
    id="colour",
    type="split",
    variants=[
        Variant(name="red", percent=35, next="mail"),
        Variant(name="blue", percent=35, next="mail"),
    ],
    holdout=30,
)


def arm(split: Split, member: str) -> str:
    """The arm the split's own rule puts a member in (the test reads the rule, not the rows)."""
    chosen = choose_variant(split, "launch", member)
    return chosen.name if chosen else "holdout"


def choices(app: App) -> dict[tuple[str, str], str]:
    """(member, split) → variant, as kept."""
    with app.database.sessions() as session:
        rows = session.execute(
            select(Member.external_id, SplitChoice.split_id, SplitChoice.variant)
            .join(Enrollment, Enrollment.id == SplitChoice.enrollment_id)
            .join(Member, Member.id == Enrollment.member_id)
        )
        return {(member, split): variant for member, split, variant in rows}


def test_each_split_of_a_journey_is_recorded_and_reported(
    app: App, tmp_path: Path, clock: FrozenClock
) -> None:
    # Given members entering a journey with two splits in a row, and a few of them ordering
    published(app, journey_folder(tmp_path, {"launch": TWO}, {"en/offer.email": BODY}))
    for member in MEMBERS:
        make_member(app, external_id=member, email=f"{member}@example.com", email_consent=True)
        send_event(app, EventInput("member.enrolled", member, id=f"e-{member}"))
    buyers = MEMBERS[:6]
    clock.advance(timedelta(days=1))
    for member in buyers:
        data = {"order_id": member, "total": "30", "currency": "EUR"}
        send_event(app, EventInput("order.completed", member, id=f"o-{member}", data=data))

    # Then each member's variant at each split is kept
    expected = {(m, "subject"): arm(SUBJECT, m) for m in MEMBERS} | {
        (m, "colour"): arm(COLOUR, m) for m in MEMBERS
    }
    assert choices(app) == expected
    # ... and a database from before they were kept finds them in the split notes
    downgrade(app.database, "0015")
    upgrade(app.database)
    assert choices(app) == expected

    # When the report is asked for, as JSON and as text
    result = CliRunner().invoke(
        main, ["journeys", "report", "launch", "--json"], env={"DATABASE_URL": app.database.url}
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    text = CliRunner().invoke(
        main, ["journeys", "report", "launch"], env={"DATABASE_URL": app.database.url}
    )

    # Then each split has its own arms, counted from each member's variant at that split
    assert [s["split"] for s in document["splits"]] == ["subject", "colour"]
    for split, rule in zip(document["splits"], (SUBJECT, COLOUR), strict=True):
        rows = {row["variant"]: row for row in split["variants"]}
        arms = [v.name for v in rule.variants] + (["holdout"] if rule.holdout else [])
        assert list(rows) == arms
        for name in arms:
            members = [m for m in MEMBERS if arm(rule, m) == name]
            reached_mail = [m for m in members if arm(COLOUR, m) != "holdout"]
            assert rows[name]["entries"] == len(members), (split["split"], name)
            assert rows[name]["sends"] == len(reached_mail)
            assert rows[name]["conversions"] == len([m for m in buyers if m in members])
    lines = text.stdout.splitlines()
    assert "split: subject" in lines and "split: colour" in lines
    colour = lines[lines.index("split: colour") :]
    red = next(line for line in colour if line.startswith("red "))
    assert red.split()[1] == str(len([m for m in MEMBERS if arm(COLOUR, m) == "red"]))
    assert lines[-1].split()[:2] == ["total", str(len(MEMBERS))]


def test_the_journey_page_shows_every_split(app: App, tmp_path: Path) -> None:
    # Given members through both splits
    app.settings = app.settings.model_copy(update={"console_secret": SecretStr(SECRET)})
    published(app, journey_folder(tmp_path, {"launch": TWO}, {"en/offer.email": BODY}))
    for member in MEMBERS:
        make_member(app, external_id=member, email=f"{member}@example.com", email_consent=True)
        send_event(app, EventInput("member.enrolled", member, id=f"e-{member}"))
    make_user(app, "vera@example.com", "viewer")

    # When a viewer opens the journey page
    with TestClient(create_app(app)) as client:
        sign_in(client, "vera@example.com")
        page = client.get("/console/journeys/launch").text

    # Then each split has its table, each arm with its members
    tables = dict(
        re.findall(r'<table class="variants" data-split="([^"]+)"[^>]*>(.*?)</table>', page, re.S)
    )
    assert list(tables) == ["subject", "colour"]
    for split, rule in (("subject", SUBJECT), ("colour", COLOUR)):
        rows = re.findall(
            r'<tr data-variant="([^"]*)"><td>[^<]*</td>\s*<td>(\d+)</td>', tables[split]
        )
        counted = {name: int(n) for name, n in rows}
        assert counted == {
            name: len([m for m in MEMBERS if arm(rule, m) == name])
            for name in [v.name for v in rule.variants] + (["holdout"] if rule.holdout else [])
        }
