"""The simulator and previews: the real engine on a throwaway copy; nothing sent or stored."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import func, select

from cli import main
from loyalty.app import App
from loyalty.models import Enrollment, LedgerEntry, Message
from tests.engine.helpers import journey_folder
from tests.factories import make_member, write_csv

NUDGE = """
id: nudge
name: Order nudge
status: draft
locales: [en]
trigger: {type: event, event: order.completed}
entry: {every_time: true}
steps:
  - {id: bonus, type: award_points, amount: 25, reason: Thanks}
  - {id: thanks_sms, type: send_sms, template: thanks}
  - {id: pause, type: wait, duration: 2d}
  - {id: thanks_mail, type: send_email, template: thanks}
"""
TEMPLATES = {
    "en/thanks.sms": (
        "Thanks {{ member.first_name }}, +{{ award.points }} pts! Reply STOP to opt out"
    ),
    "en/thanks.email": (
        "---\nsubject: Thanks {{ member.first_name }}\n---\n<p>{{ award.points }}</p>\n"
    ),
}


def env(app: App, folder: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": app.database.url,
        "JOURNEYS_DIR": str(folder),
        "OUTBOX_DIR": str(app.settings.outbox_dir),
        "LOG_LEVEL": "ERROR",
    }


def test_simulate_prints_a_sorted_timeline_and_touches_nothing(app: App, tmp_path: Path) -> None:
    folder = journey_folder(tmp_path, {"nudge": NUDGE}, TEMPLATES)
    make_member(app, external_id="real-1")  # the real database has its own member
    members = write_csv(
        tmp_path / "members.csv",
        "external_id,first_name,email,phone,email_consent,sms_consent,time_zone",
        "ann,Ann,ann@example.com,+14155550100,yes,yes,America/New_York",
        "bob,Bob,bob@example.com,+14155550101,yes,no,America/New_York",
    )
    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join(
            json.dumps(
                {
                    "type": "order.completed",
                    "member": m,
                    "id": f"o-{m}",
                    "at": at,
                    "data": {"order_id": m, "total": 10, "currency": "USD"},
                }
            )
            for m, at in (("bob", "2026-04-01T10:00:00Z"), ("ann", "2026-04-01T09:00:00Z"))
        )
        + "\n"
    )
    result = CliRunner().invoke(
        main,
        [
            "journeys",
            "simulate",
            "--from",
            "2026-04-01",
            "--to",
            "2026-04-05",
            "--members",
            str(members),
            "--events",
            str(events),
            "--json",
        ],
        env=env(app, folder),
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    records = document["timeline"]
    assert [r["at"] for r in records] == sorted(r["at"] for r in records)
    assert all(r["at"].endswith("Z") for r in records)
    ann = [(r["at"], r["action"], r["step"]) for r in records if r["member"] == "ann"]
    # 09:00Z is 05:00 in New York: the SMS waits for the end of quiet hours (09:00 local).
    # At one instant the rows come in the order they ran: entry, the step, then the exit.
    assert ann == [
        ("2026-04-01T09:00:00Z", "enter", ""),
        ("2026-04-01T09:00:00Z", "award_points", "bonus"),
        ("2026-04-01T13:00:00Z", "send_sms", "thanks_sms"),
        ("2026-04-03T09:00:00Z", "send_email", "thanks_mail"),
        ("2026-04-03T09:00:00Z", "exit", "thanks_mail"),
    ]
    assert document["summary"]["nudge"]["entries"] == 2
    assert document["summary"]["nudge"]["conversions"] == 0
    assert document["summary"]["nudge"]["sends"] == {"email": 2, "sms": 1}
    bob_sms = next(r for r in records if r["member"] == "bob" and r["action"] == "send_sms")
    assert bob_sms["suppressed"] == "no_consent"
    ann_sms = next(r for r in records if r["member"] == "ann" and r["action"] == "send_sms")
    assert (ann_sms["channel"], ann_sms["template"], ann_sms["locale"]) == ("sms", "thanks", "en")
    assert ann_sms["deferred_from"] == "2026-04-01T09:00:00Z"
    assert next(r for r in records if r["action"] == "award_points")["points"] == 25

    # The real database and outbox are untouched.
    with app.database.sessions() as session:
        for model in (Enrollment, Message, LedgerEntry):
            assert session.scalar(select(func.count()).select_from(model)) == 0
    assert not app.settings.outbox_dir.exists()


def test_simulate_summary_counts_entries_sends_points_and_sms_cost(
    app: App, tmp_path: Path
) -> None:
    folder = journey_folder(tmp_path, {"nudge": NUDGE}, TEMPLATES)
    make_member(
        app,
        external_id="ann",
        first_name="Ann",
        phone="+14155550100",
        email="ann@example.com",
        sms_consent=True,
        email_consent=True,
    )
    events = tmp_path / "events.jsonl"
    events.write_text(
        json.dumps(
            {
                "type": "order.completed",
                "member": "ann",
                "id": "1",
                "at": "2026-04-01T12:00:00Z",
                "data": {"order_id": "1", "total": 5, "currency": "USD"},
            }
        )
    )
    result = CliRunner().invoke(
        main,
        [
            "journeys",
            "simulate",
            "--from",
            "2026-04-01",
            "--to",
            "2026-04-10",
            "--events",
            str(events),
        ],
        env=env(app, folder),
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == (
        "nudge: 1 entries, 0 conversions, 1 email, 1 sms, 25 points, 1 SMS segments (~0.0079)"
    )


def test_preview_renders_with_the_members_data(app: App, tmp_path: Path) -> None:
    folder = journey_folder(tmp_path, {"nudge": NUDGE}, TEMPLATES)
    make_member(app, external_id="ann", first_name="Ann")
    result = CliRunner().invoke(
        main, ["journeys", "preview", "nudge", "--member", "ann"], env=env(app, folder)
    )
    assert result.exit_code == 0, result.output
    assert "Thanks Ann, +25 pts! Reply STOP to opt out" in result.output
    assert "[1 segment(s), GSM-7]" in result.output
    assert "Subject: Thanks Ann" in result.output
    missing = CliRunner().invoke(
        main, ["journeys", "preview", "nope", "--member", "ann"], env=env(app, folder)
    )
    assert missing.exit_code == 2 and "no valid journey 'nope'" in missing.output
