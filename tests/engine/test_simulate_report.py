"""`journeys simulate --report`: the split report on the simulated data agrees with the timeline."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from automations.definition import Split, choose_variant, load_journeys
from cli import main
from loyalty.app import App
from tests.factories import write_csv

ROOT = Path(__file__).resolve().parents[2]
NPS = "post_purchase_nps"
MEMBERS = [f"c{i:02d}" for i in range(40)]


def nps_arm(member: str) -> str:
    [loaded], _ = load_journeys([ROOT / "journeys" / f"{NPS}.yaml"])
    split = loaded.journey.step("pick_channel")
    assert isinstance(split, Split)
    chosen = choose_variant(split, NPS, member)
    return chosen.name if chosen else "holdout"


def test_simulated_nps_report_matches_the_timeline(app: App, tmp_path: Path) -> None:
    arms = {m: nps_arm(m) for m in MEMBERS}
    assert set(arms.values()) == {"email", "sms", "holdout"}
    # Half of each arm answers a survey (the holdout's answers come from elsewhere: the
    # control group shows how many would have answered anyway).
    answering = {m for arm in ("email", "sms", "holdout") for m in _half(arms, arm)}
    members = write_csv(
        tmp_path / "members.csv",
        "external_id,first_name,email,phone,email_consent,sms_consent,time_zone",
        *(
            f"{m},N{m},{m}@example.com,+1415555{i:04d},yes,{'yes' if i % 2 else 'no'},UTC"
            for i, m in enumerate(MEMBERS)
        ),
    )
    events = tmp_path / "events.jsonl"
    lines = [
        {
            "type": "order.completed",
            "member": m,
            "id": f"o-{m}",
            "at": "2026-04-01T08:00:00Z",
            "data": {"order_id": m, "total": 20, "currency": "USD"},
        }
        for m in MEMBERS
    ] + [
        {
            "type": "survey.answered",
            "member": m,
            "id": f"a-{m}",
            "at": "2026-04-10T12:00:00Z",
            "data": {"kind": "nps", "score": 9},
        }
        for m in sorted(answering)
    ]
    events.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    args = [
        "journeys",
        "simulate",
        "--from",
        "2026-04-01",
        "--to",
        "2026-04-30",
        "--journey",
        NPS,
        "--members",
        str(members),
        "--events",
        str(events),
        "--report",
    ]
    env = {
        "DATABASE_URL": app.database.url,
        "JOURNEYS_DIR": str(ROOT / "journeys"),
        "OUTBOX_DIR": str(app.settings.outbox_dir),
        "LOG_LEVEL": "ERROR",
    }

    result = CliRunner().invoke(main, [*args, "--json"], env=env)

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    [report] = document["reports"]
    assert report["journey"] == NPS
    rows = {row["variant"]: row for row in report["variants"]}
    assert list(rows) == ["email", "sms", "holdout"]
    timeline = [r for r in document["timeline"] if r["journey"] == NPS]
    summary = document["summary"][NPS]["variants"]
    for name, row in rows.items():
        mine = [r for r in timeline if r.get("variant") == name]
        figures = {
            "entries": sum(r["action"] == "enter" for r in mine),
            "sends": sum(r["action"].startswith("send_") and r["state"] == "sent" for r in mine),
            "conversions": sum(r["action"] == "goal" for r in mine),
        }
        assert {k: row[k] for k in figures} == figures == {k: summary[name][k] for k in figures}
        assert row["entries"] == sum(arm == name for arm in arms.values())
        assert row["conversions"] == len([m for m in answering if arms[m] == name])
    assert rows["holdout"]["sends"] == 0 and rows["holdout"]["control"] is True
    assert rows["email"]["sends"] > 0 and rows["sms"]["sends"] > 0
    assert rows["email"]["lift"] is not None and rows["holdout"]["lift"] is None
    # The holdout waited out the 14-day goal window receiving nothing.
    held = [m for m in MEMBERS if arms[m] == "holdout" and m not in answering]
    exits = [r for r in timeline if r["member"] in held and r["action"] == "exit"]
    assert {(r["at"], r["step"], r["reason"]) for r in exits} == {
        ("2026-04-15T08:00:00Z", "pick_channel", "holdout")
    }
    assert len(exits) == len(held)

    text = CliRunner().invoke(main, args, env=env)
    assert text.exit_code == 0, text.output
    out = text.stdout.splitlines()
    start = out.index(f"{NPS} (Post-purchase NPS)")
    holdout = next(line for line in out[start:] if line.startswith("holdout"))
    figures = rows["holdout"]
    assert holdout.split()[1:4] == [str(figures["entries"]), "0", str(figures["conversions"])]
    assert holdout.endswith("control")
    assert f"  holdout: {figures['entries']} entries, 0 sends" in text.stdout


def _half(arms: dict[str, str], arm: str) -> list[str]:
    members = sorted(m for m, a in arms.items() if a == arm)
    return members[: max(1, len(members) // 2)]
