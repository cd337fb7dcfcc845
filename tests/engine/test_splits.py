"""Splits you can read: each member's variant is kept, the holdout is a real control group,
and `journeys report` shows per variant entries, sends, conversions and the lift."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from automations.definition import choose_variant
from automations.definition.models import Split, Variant
from automations.report import newcombe_interval, wilson_interval
from cli import main
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.event_types import EventInput
from loyalty.models import Member
from tests.engine.helpers import enrollments, journey_folder, messages, published, send_event, tick
from tests.factories import make_member

OFFER = """
id: offer
name: Offer test
status: active
trigger: {type: event, event: member.enrolled}
entry: {once: true}
goal: {event: order.completed, within: 10d}
steps:
  - id: pick
    type: split
    variants:
      - {name: short, percent: 30, next: short_mail}
      - {name: long, percent: 30, next: long_mail}
    holdout: 40
  - {id: short_mail, type: send_email, template: offer, next: end}
  - {id: long_mail, type: send_email, template: offer}
"""
PLAIN = """
id: plain
name: No split
status: active
trigger: {type: event, event: member.enrolled}
entry: {once: true}
steps:
  - {id: hello, type: send_email, template: offer}
"""
BODY = "---\nsubject: Offer\n---\n<p>{{ member.external_id }}</p>\n"
MEMBERS = [f"m{i:02d}" for i in range(30)]


def arm(member: str) -> str:
    """The arm the split's own rule puts a member in (the test reads the rule, not the rows)."""
    split = Split(
        id="pick",
        type="split",
        variants=[
            Variant(name="short", percent=30, next="short_mail"),
            Variant(name="long", percent=30, next="long_mail"),
        ],
        holdout=40,
    )
    chosen = choose_variant(split, "offer", member)
    return chosen.name if chosen else "holdout"


def order(member: str) -> EventInput:
    data = {"order_id": member, "total": "30", "currency": "EUR"}
    return EventInput("order.completed", member, id=f"o-{member}", data=data)


def given_members_in_the_split(app: App, tmp_path: Path) -> dict[str, int]:
    folder = journey_folder(tmp_path, {"offer": OFFER, "plain": PLAIN}, {"en/offer.email": BODY})
    published(app, folder)
    for member in MEMBERS:
        make_member(app, external_id=member, email=f"{member}@example.com", email_consent=True)
        send_event(app, EventInput("member.enrolled", member, id=f"e-{member}"))
    with app.database.sessions() as session:
        return {m.external_id: m.id for m in session.scalars(select(Member))}


def report(app: App, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        main, ["journeys", "report", *args], env={"DATABASE_URL": app.database.url}
    )
    return result.exit_code, result.stdout, result.stderr


def test_the_holdout_stays_enrolled_receiving_nothing_until_the_goal_window_ends(
    app: App, tmp_path: Path, clock: FrozenClock
) -> None:
    ids = given_members_in_the_split(app, tmp_path)
    names = {v: k for k, v in ids.items()}
    arms = {m: arm(m) for m in MEMBERS}
    assert set(arms.values()) == {"short", "long", "holdout"}

    offer = {names[e.member_id]: e for e in enrollments(app) if e.journey_id == "offer"}
    assert {m: e.variant for m, e in offer.items()} == arms
    for member, enrollment in offer.items():
        if arms[member] == "holdout":
            assert enrollment.state == "waiting"
            assert enrollment.next_run_at == enrollment.entered_at + timedelta(days=10)
        else:
            assert (enrollment.state, enrollment.exit_reason) == ("completed", None)
    sent_to = {names[m.member_id] for m in messages(app) if m.journey_id == "offer"}
    assert sent_to == {m for m in MEMBERS if arms[m] != "holdout"}

    # A holdout member orders within the window: a conversion of the control group.
    held = sorted(m for m in MEMBERS if arms[m] == "holdout")
    clock.advance(timedelta(days=3))
    send_event(app, order(held[0]))
    clock.advance(timedelta(days=7))
    tick(app)

    offer = {names[e.member_id]: e for e in enrollments(app) if e.journey_id == "offer"}
    assert (offer[held[0]].state, offer[held[0]].exit_reason) == ("converted", "goal")
    for member in held[1:]:
        left = offer[member]
        assert (left.state, left.exit_reason, left.current_step) == ("exited", "holdout", "pick")
    assert {names[m.member_id] for m in messages(app) if m.journey_id == "offer"} == sent_to


def test_report_shows_each_variant_against_the_holdout(
    app: App, tmp_path: Path, clock: FrozenClock
) -> None:
    given_members_in_the_split(app, tmp_path)
    arms = {m: arm(m) for m in MEMBERS}
    buyers = [m for m in MEMBERS if arms[m] == "short"][:3] + [
        m for m in MEMBERS if arms[m] == "holdout"
    ][:1]
    clock.advance(timedelta(days=1))
    for member in buyers:
        send_event(app, order(member))

    code, out, _ = report(app, "offer", "--json")

    assert code == 0
    document = json.loads(out)
    rows = {row["variant"]: row for row in document["variants"]}
    assert list(rows) == ["short", "long", "holdout"]
    for name, row in rows.items():
        members = [m for m in MEMBERS if arms[m] == name]
        converted = [m for m in buyers if arms[m] == name]
        assert row["entries"] == len(members)
        assert row["sends"] == (0 if name == "holdout" else len(members))
        assert row["conversions"] == len(converted)
        assert row["conversion_rate"] == pytest.approx(len(converted) / len(members))
    holdout = rows["holdout"]
    assert holdout["control"] is True and holdout["lift"] is None
    short = rows["short"]
    low, high = newcombe_interval(3, short["entries"], 1, holdout["entries"])
    assert short["lift"] == {
        "difference": pytest.approx(3 / short["entries"] - 1 / holdout["entries"]),
        "low": pytest.approx(low),
        "high": pytest.approx(high),
    }
    assert rows["long"]["lift"]["difference"] == pytest.approx(-1 / holdout["entries"])
    assert document["total"]["entries"] == len(MEMBERS)
    assert document["total"]["conversions"] == len(buyers)
    assert (document["goal"], document["interval"]) == ("order.completed within 10d", "newcombe")

    code, out, _ = report(app, "offer")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "offer (Offer test)"
    holdout_line = next(line for line in lines if line.startswith("holdout"))
    assert holdout_line.split()[1:5] == [
        str(holdout["entries"]),
        "0",
        "1",
        "%.1f%%" % (100 / holdout["entries"]),
    ]
    assert holdout_line.endswith("control")
    short_line = next(line for line in lines if line.startswith("short"))
    assert f"({low * 100:+.1f} pp to {high * 100:+.1f} pp)" in short_line
    assert next(line for line in lines if line.startswith("total")).split()[1:4] == [
        str(len(MEMBERS)),
        str(len(MEMBERS) - holdout["entries"]),
        str(len(buyers)),
    ]


def test_report_errors_are_one_line(app: App, tmp_path: Path) -> None:
    given_members_in_the_split(app, tmp_path)

    code, out, err = report(app, "ofer")
    assert code == 2
    assert err == (
        "error: unknown journey `ofer`; the journeys are: offer, plain "
        "(see `loyalty journeys list`)\n"
    )

    code, out, err = report(app, "plain")
    assert code == 0
    assert err.startswith("journey `plain` has no split step, so no variants to compare")
    assert len(err.splitlines()) == 1
    total = out.splitlines()[-1].split()
    assert total == ["total", "30", "30", "0", "0.0%"]
    code, out, _ = report(app, "plain", "--json")
    assert json.loads(out)["variants"] == []
    assert json.loads(out)["total"]["entries"] == 30


def test_newcombe_interval_matches_the_published_examples() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873-890, table II, method 10.
    assert newcombe_interval(56, 70, 48, 80) == pytest.approx((0.0524, 0.3339), abs=5e-5)
    assert newcombe_interval(9, 10, 3, 10) == pytest.approx((0.1705, 0.8090), abs=5e-5)
    assert newcombe_interval(0, 10, 0, 20) == pytest.approx((-0.1611, 0.2775), abs=5e-5)
    assert newcombe_interval(10, 10, 0, 20) == pytest.approx((0.6791, 1.0), abs=5e-5)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=5e-5)
