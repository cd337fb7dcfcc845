"""`journeys simulate --open-rate/--click-rate`: simulated emails are opened and clicked, and
journeys branching on engagement take both paths, the same way on every run of a seed."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from cli import main
from loyalty.app import App
from tests.engine.helpers import journey_folder
from tests.engine.test_engagement import BODY, PROMO
from tests.engine.test_simulate import env
from tests.factories import write_csv

MEMBERS = [f"p{i:03d}" for i in range(80)]
# The promo's follow-ups (thanks, reminder) use a template of their own.
FOLLOW_UPS = PROMO.replace(
    "type: send_email, template: offer, next: end", "type: send_email, template: follow, next: end"
).replace(
    "{id: reminder, type: send_email, template: offer}",
    "{id: reminder, type: send_email, template: follow}",
)
TEMPLATES = {"en/offer.email": BODY, "en/follow.email": BODY}


def _given_members_ordering(tmp_path: Path) -> tuple[Path, Path]:
    members = write_csv(
        tmp_path / "members.csv",
        "external_id,first_name,email,email_consent,time_zone",
        *(f"{m},N{m},{m}@example.com,yes,UTC" for m in MEMBERS),
    )
    events = tmp_path / "events.jsonl"
    lines = [
        {
            "type": "order.completed",
            "member": m,
            "id": f"o-{m}",
            "at": "2026-04-01T10:00:00Z",
            "data": {"order_id": m, "total": 30, "currency": "EUR"},
        }
        for m in MEMBERS
    ]
    events.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return members, events


def _simulate(app: App, folder: Path, files: tuple[Path, Path], *options: str) -> dict[str, Any]:
    members, events = files
    args = ["journeys", "simulate", "--from", "2026-04-01", "--to", "2026-04-06"]
    args += ["--members", str(members), "--events", str(events), "--json", *options]
    result = CliRunner().invoke(main, args, env=env(app, folder))
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def _by_action(document: dict[str, Any], action: str, step: str | None = None) -> set[str]:
    return {
        r["member"]
        for r in document["timeline"]
        if r["action"] == action and (step is None or r["step"] == step)
    }


def _at(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(record["at"])


def test_an_open_rate_sends_members_down_both_branches(app: App, tmp_path: Path) -> None:
    # Given a promo that thanks those who opened its first email and reminds the others
    folder = journey_folder(tmp_path, {"promo": FOLLOW_UPS}, TEMPLATES)
    files = _given_members_ordering(tmp_path)

    # When it is simulated without rates, nobody opens: everyone gets the reminder
    plain = _simulate(app, folder, files)
    assert _by_action(plain, "open") == set()
    assert _by_action(plain, "send_email", "reminder") == set(MEMBERS)

    # When 30% open and 5% click (seed 7), and everyone opens the follow-ups
    rates = ("--open-rate", "0.3", "--click-rate", "0.05", "--open-rate", "follow=1")
    document = _simulate(app, folder, files, *rates, "--seed", "7")

    # Then the members who opened the first email are thanked, the others reminded
    openers = _by_action(document, "open", "first")
    thanked = _by_action(document, "send_email", "thanks")
    reminded = _by_action(document, "send_email", "reminder")
    assert thanked == openers and reminded == set(MEMBERS) - openers
    assert 0.15 <= len(openers) / len(MEMBERS) <= 0.45  # 30% of 80, within 3 sigma
    clickers = _by_action(document, "click", "first")
    assert clickers <= openers and 0 < len(clickers) <= 0.15 * len(MEMBERS)
    # ... each open 5 minutes to a day after its send, each click minutes after its open
    timeline = document["timeline"]
    sends = [r for r in timeline if r["action"] == "send_email" and r["state"] == "sent"]
    sent = {(r["member"], r["step"]): _at(r) for r in sends}
    opened = {(r["member"], r["step"]): _at(r) for r in timeline if r["action"] == "open"}
    for key, at in opened.items():
        assert timedelta(minutes=5) <= at - sent[key] <= timedelta(days=1, minutes=5)
    clicks = [r for r in timeline if r["action"] == "click"]
    for r in clicks:
        delay = _at(r) - opened[r["member"], r["step"]]
        assert timedelta(minutes=1) <= delay <= timedelta(minutes=10)
    # ... the follow-ups' own rate wins over the global one
    assert {m for m, step in opened if step != "first"} == set(MEMBERS)
    # ... and the summary counts them, the follow-ups' too
    summary = document["summary"]["promo"]
    assert (summary["opens"], summary["clicks"]) == (len(opened), len(clicks))
    assert len(opened) == len(openers) + len(MEMBERS)
    assert summary["sends"] == {"email": 2 * len(MEMBERS)}

    # When run again with the same seed, the same members open; another seed draws others
    assert _simulate(app, folder, files, *rates, "--seed", "7")["timeline"] == timeline
    other = _by_action(_simulate(app, folder, files, *rates, "--seed", "8"), "open", "first")
    assert other != openers and 0.15 <= len(other) / len(MEMBERS) <= 0.45


def test_a_rate_outside_zero_to_one_is_refused_in_one_line(app: App, tmp_path: Path) -> None:
    folder = journey_folder(tmp_path, {"promo": PROMO}, {"en/offer.email": BODY})

    result = CliRunner().invoke(
        main,
        [
            "journeys",
            "simulate",
            "--from",
            "2026-04-01",
            "--to",
            "2026-04-02",
            *("--open-rate", "30%"),
        ],
        env=env(app, folder),
    )

    assert result.exit_code == 2
    assert result.stderr == (
        "error: --open-rate 30%: a rate is a share between 0 and 1, for every email or one "
        "template, e.g. --open-rate 0.3 or --open-rate offer=0.3\n"
    )
