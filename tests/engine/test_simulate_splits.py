"""`journeys simulate --report` on a journey with two splits: members already in flight are
counted with those who enter during the period, and every split shows its own arms."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from cli import main
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.event_types import EventInput
from tests.engine.helpers import journey_folder, published, send_event
from tests.engine.test_simulate import env
from tests.engine.test_split_choices import BODY, COLOUR, SUBJECT, arm
from tests.factories import make_member, write_csv

# The splits of `test_split_choices` (same journey id, so the same arms), a wait between them.
LAUNCH = """
id: launch
name: Launch
status: active
trigger: {type: event, event: order.completed}
entry: {once: true}
goal: {event: reward.redeemed, within: 10d}
steps:
  - id: subject
    type: split
    variants:
      - {name: plain, percent: 50, next: pause}
      - {name: fancy, percent: 50, next: pause}
  - {id: pause, type: wait, duration: 3d}
  - id: colour
    type: split
    variants:
      - {name: red, percent: 35, next: mail}
      - {name: blue, percent: 35, next: mail}
    holdout: 30
  - {id: mail, type: send_email, template: offer}
"""
LIVE = [f"l{i:02d}" for i in range(12)]
NEW = [f"n{i:02d}" for i in range(12)]


def _order(member: str, at: str) -> dict[str, Any]:
    data = {"order_id": member, "total": 30, "currency": "EUR"}
    return {
        "type": "order.completed",
        "member": member,
        "id": f"o-{member}",
        "at": at,
        "data": data,
    }


def _redeem(member: str, at: str) -> dict[str, Any]:
    data = {"points": 10}
    return {
        "type": "reward.redeemed",
        "member": member,
        "id": f"r-{member}",
        "at": at,
        "data": data,
    }


def _write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def _simulate(app: App, folder: Path, *args: str) -> tuple[dict[str, Any], list[str]]:
    command = ["journeys", "simulate", "--journey", "launch", "--report", *args]
    document = CliRunner().invoke(main, [*command, "--json"], env=env(app, folder))
    assert document.exit_code == 0, document.output
    text = CliRunner().invoke(main, command, env=env(app, folder))
    assert text.exit_code == 0, text.output
    return json.loads(document.stdout), text.stdout.splitlines()


def _arms(split: dict[str, Any]) -> dict[str | None, dict[str, Any]]:
    return {row["variant"]: row for row in split["variants"]}


def test_the_simulated_report_counts_the_members_already_in_flight(
    app: App, tmp_path: Path, clock: FrozenClock
) -> None:
    # Given 12 members who entered on the live database (split at `subject`, now waiting), and
    # one who entered and converted before the simulated period
    folder = journey_folder(tmp_path, {"launch": LAUNCH}, {"en/offer.email": BODY})
    published(app, folder)
    for member in [*LIVE, "done", *NEW]:
        make_member(app, external_id=member, email=f"{member}@example.com", email_consent=True)
    for member in [*LIVE, "done"]:
        send_event(
            app, EventInput.from_json(_order(member, clock.now().isoformat()), source="shop")
        )
    clock.advance(timedelta(hours=1))
    send_event(app, EventInput.from_json(_redeem("done", clock.now().isoformat()), source="shop"))
    # ... and, in the simulated period, 12 new members ordering and one live member redeeming
    events = [_order(m, "2026-03-11T09:00:00Z") for m in NEW]
    events.append(_redeem("l00", "2026-03-12T10:00:00Z"))
    path = _write(tmp_path / "events.jsonl", events)

    # When the period is simulated with the split report
    document, text = _simulate(
        app, folder, "--from", "2026-03-11", "--to", "2026-03-22", "--events", str(path)
    )

    # Then the report counts the new members and those in flight at the start, not `done`
    [report] = document["reports"]
    everyone = [*LIVE, *NEW]
    assert report["total"]["entries"] == len(everyone)
    assert report["in_flight_at_start"] == len(LIVE)
    assert report["total"]["conversions"] == 1
    # ... each in the arm they got at each split, the live ones' first split included (l00
    # converted before reaching the second: "not split yet" there)
    subject, colour = (_arms(split) for split in report["splits"])
    for name, row in subject.items():
        assert row["entries"] == len([m for m in everyone if arm(SUBJECT, m) == name]), name
    assert subject[arm(SUBJECT, "l00")]["conversions"] == 1
    for name, row in colour.items():
        split = [m for m in everyone if m != "l00" and name == arm(COLOUR, m)]
        assert row["entries"] == (len(split) if name else 1), name
    assert colour[None]["conversions"] == 1
    # ... the summary says the same, the in-flight members apart
    summary = document["summary"]["launch"]
    assert (summary["entries"], summary["in_flight"]) == (len(NEW), len(LIVE))
    assert summary["conversions"] == 1
    for name, figures in summary["splits"]["subject"].items():
        assert figures["in_flight"] == len([m for m in LIVE if arm(SUBJECT, m) == name])
        assert figures["entries"] == len([m for m in NEW if arm(SUBJECT, m) == name])
    # ... and the text says how many entered before
    assert "entries: members who entered from 2026-03-11 00:00Z, and 12 already in flight " in (
        "\n".join(text)
    )
    assert text[-1].split()[:2] == ["total", str(len(everyone))]


def test_a_two_split_journeys_simulated_report_shows_both_splits(app: App, tmp_path: Path) -> None:
    # Given 24 members from a file, each ordering once
    folder = journey_folder(tmp_path, {"launch": LAUNCH}, {"en/offer.email": BODY})
    members = write_csv(
        tmp_path / "members.csv",
        "external_id,email,email_consent,time_zone",
        *(f"{m},{m}@example.com,yes,UTC" for m in [*LIVE, *NEW]),
    )
    path = _write(
        tmp_path / "events.jsonl", [_order(m, "2026-04-01T09:00:00Z") for m in LIVE + NEW]
    )

    # When the journey is simulated with the split report
    document, text = _simulate(
        app,
        folder,
        *("--from", "2026-04-01", "--to", "2026-04-20"),
        *("--members", str(members), "--events", str(path)),
    )

    # Then the report and the summary show each split with its own arms
    [report] = document["reports"]
    summary = document["summary"]["launch"]["splits"]
    assert [s["split"] for s in report["splits"]] == ["subject", "colour"]
    assert sorted(summary) == ["colour", "subject"]
    for split, rule in zip(report["splits"], (SUBJECT, COLOUR), strict=True):
        names = [v.name for v in rule.variants] + (["holdout"] if rule.holdout else [])
        rows = _arms(split)
        assert list(rows) == names
        for name in names:
            members_in_arm = [m for m in LIVE + NEW if arm(rule, m) == name]
            reached_mail = [m for m in members_in_arm if arm(COLOUR, m) != "holdout"]
            figures = summary[split["split"]][name]
            assert rows[name]["entries"] == figures["entries"] == len(members_in_arm)
            assert rows[name]["sends"] == figures["sends"] == len(reached_mail)
    for line in ("split: subject", "split: colour", "  split subject:", "  split colour:"):
        assert line in text
