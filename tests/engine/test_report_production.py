"""The production shape: `loyalty serve`, `worker` and `scheduler` on PostgreSQL and Redis
with the SendGrid emulator. Members enter a split journey, the emulator posts their
opens and clicks (signed) to the webhook, a branch on engagement picks each member's
follow-up, and `loyalty journeys report` prints the figures the database holds."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select

from automations.definition import Split, choose_variant, load_journeys
from bench.soak_processes import Supervisor, free_port, loyalty_command
from loyalty.app import App
from loyalty.db import Database
from loyalty.models import Enrollment, Member, Message
from sandbox.sendgrid import SendGridSandbox
from tests.conftest import REDIS_URL
from tests.processes import answers, wait_for

TRIAL = """\
id: trial
name: Trial offer
status: active
trigger: {type: event, event: member.enrolled}
entry: {once: true}
goal: {event: order.completed, within: 1h}
steps:
  - id: pick
    type: split
    variants:
      - {name: short, percent: 40, next: first}
      - {name: long, percent: 40, next: first}
    holdout: 20
  - {id: first, type: send_email, template: offer}
  - {id: pause, type: wait, duration: 5s}
  - id: clicked_first
    type: branch
    if: {engaged: {event: clicked, journey: trial, step: first, within: 1h}}
    then: vip
  - id: opened_first
    type: branch
    if: {engaged: {event: opened, journey: trial, step: first, within: 1h}}
    then: thanks
    else: reminder
  - {id: vip, type: send_email, template: vip, next: end}
  - {id: thanks, type: send_email, template: thanks, next: end}
  - {id: reminder, type: send_email, template: reminder}
"""
SUBJECTS = {"offer": "Offer", "vip": "VIP", "thanks": "Thanks", "reminder": "Reminder"}


def journey_folder(root: Path) -> Path:
    folder = root / "journeys"
    (folder / "templates" / "en").mkdir(parents=True)
    (folder / "trial.yaml").write_text(TRIAL, encoding="utf-8")
    for name, subject in SUBJECTS.items():
        body = f"---\nsubject: {subject}\n---\n<p>{{{{ member.first_name }}}}</p>\n"
        (folder / "templates" / "en" / f"{name}.email.liquid").write_text(body, encoding="utf-8")
    return folder


def pick_members(folder: Path) -> dict[str, str]:
    """Members for every arm: in each variant one who clicks, one who opens, one who does
    neither; two in the holdout (one with an address that would click)."""
    [loaded], _ = load_journeys([folder / "trial.yaml"])
    split = loaded.journey.step("pick")
    assert isinstance(split, Split)
    wanted = {"short": ["click", "open", "plain"], "long": ["click", "open", "plain"]}
    wanted["holdout"] = ["click", "plain"]
    chosen: dict[str, str] = {}
    for n in range(200):
        member = f"p{n:03d}"
        variant = choose_variant(split, "trial", member)
        arm = variant.name if variant else "holdout"
        if wanted[arm]:
            chosen[member] = f"{arm}:{wanted[arm].pop(0)}"
        if not any(wanted.values()):
            return chosen
    raise AssertionError("not enough members for every arm")


def address(member: str, behaviour: str) -> str:
    tag = behaviour.split(":")[1]
    return f"{member}@example.com" if tag == "plain" else f"{member}+{tag}@example.com"


def figures(database: Database) -> dict[str, dict[str, int]]:
    """Per variant, straight from the tables."""
    out: dict[str, dict[str, int]] = {}
    with database.sessions() as session:
        for enrollment in session.scalars(select(Enrollment)):
            row = out.setdefault(str(enrollment.variant), {"entries": 0, "conversions": 0})
            row["entries"] += 1
            row["conversions"] += enrollment.converted_at is not None
        for variant, sends in session.execute(
            select(Enrollment.variant, func.count(Message.id))
            .join(Message, Message.enrollment_id == Enrollment.id)
            .where(Message.state == "sent")
            .group_by(Enrollment.variant)
        ):
            out[str(variant)]["sends"] = sends
    for row in out.values():
        row.setdefault("sends", 0)
    return out


@pytest.mark.integration
def test_engagement_steers_a_split_journey_and_the_report_reads_the_database(
    postgres_app: App, redis_url: str, sendgrid_sandbox: SendGridSandbox, tmp_path: Path
) -> None:
    database = postgres_app.database
    folder = journey_folder(tmp_path)
    members = pick_members(folder)
    port = free_port()
    sendgrid_sandbox.webhook_url = f"http://127.0.0.1:{port}/webhooks/sendgrid"
    env = {
        **os.environ,
        "DATABASE_URL": database.url,
        "REDIS_URL": REDIS_URL,
        "JOURNEYS_DIR": str(folder),
        "OUTBOX_DIR": str(tmp_path / "outbox"),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "SENDGRID_API_KEY": sendgrid_sandbox.api_key,
        "SENDGRID_BASE_URL": sendgrid_sandbox.base_url,
        "SENDGRID_WEBHOOK_PUBLIC_KEY": sendgrid_sandbox.public_key,
        "EMAIL_FROM": "club@example.com",
        "POSTAL_ADDRESS": "1 Main St, Springfield",
        "LOG_LEVEL": "INFO",
    }
    loyalty = loyalty_command()
    csv = tmp_path / "members.csv"
    csv.write_text(
        "external_id,first_name,email,email_consent\n"
        + "".join(f"{m},N{m},{address(m, b)},yes\n" for m, b in members.items()),
        encoding="utf-8",
    )
    subprocess.run([*loyalty, "members", "import", str(csv)], env=env, check=True, timeout=60)
    supervisor = Supervisor(env, tmp_path, tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*loyalty, *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )

    try:
        supervisor.start("serve", [*loyalty, "serve", "--port", str(port)])
        supervisor.start("worker", [*loyalty, "worker", "--processes", "1", "--threads", "2"])
        supervisor.start("scheduler", [*loyalty, "scheduler"])
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"), "loyalty serve")

        def ingest(name: str, events: list[dict[str, object]]) -> None:
            path = tmp_path / f"{name}.jsonl"
            path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
            ingested = run("events", "ingest", str(path))
            assert ingested.returncode == 0, ingested.stderr

        # When every member signs up
        ingest("enrolled", [{"type": "member.enrolled", "member": m, "id": m} for m in members])

        # Then each follow-up depends on what the member did with the first email
        def received() -> dict[str, list[str]]:
            got: dict[str, list[str]] = {m: [] for m in members}
            for mail in sendgrid_sandbox.sent:
                for person in mail.body["personalizations"]:
                    member = person["to"][0]["email"].split("@")[0].split("+")[0]
                    got[member].append(str(person.get("subject") or mail.body.get("subject")))
            return got

        def followed_up() -> bool:
            return sum(len(s) for s in received().values()) == 12

        wait_for(followed_up, "every first email and its follow-up", logs=tmp_path)
        expected = {"click": ["Offer", "VIP"], "open": ["Offer", "Thanks"]}
        for member, behaviour in members.items():
            arm, tag = behaviour.split(":")
            if arm == "holdout":
                assert received()[member] == [], member
            else:
                assert received()[member] == expected.get(tag, ["Offer", "Reminder"]), member
        with database.sessions() as session:
            opened = session.scalars(
                select(Member.external_id)
                .join(Message, Message.member_id == Member.id)
                .where(Message.step_id == "first", Message.last_opened_at.is_not(None))
            ).all()
        # (a click counts as an open)
        engaged = [
            m
            for m, b in members.items()
            if b in ("short:click", "short:open", "long:click", "long:open")
        ]
        assert sorted(opened) == sorted(engaged)

        # And when one member of `short` and one of the holdout order within the goal window
        buyers = [
            next(m for m, b in members.items() if b.startswith(arm)) for arm in ("short", "holdout")
        ]
        orders: list[dict[str, object]] = [
            {
                "type": "order.completed",
                "member": member,
                "id": f"o-{member}",
                "data": {"order_id": member, "total": "20", "currency": "USD"},
            }
            for member in buyers
        ]
        ingest("orders", orders)

        def converted() -> bool:
            return sum(r["conversions"] for r in figures(database).values()) == 2

        wait_for(converted, "the two conversions", logs=tmp_path)
    finally:
        supervisor.stop_all()

    # Then `loyalty journeys report` prints the figures the database holds
    rows = figures(database)
    assert rows == {
        "short": {"entries": 3, "sends": 6, "conversions": 1},
        "long": {"entries": 3, "sends": 6, "conversions": 0},
        "holdout": {"entries": 2, "sends": 0, "conversions": 1},
    }
    report = run("journeys", "report", "trial", "--json")
    assert report.returncode == 0, report.stderr
    document = json.loads(report.stdout)
    printed = {
        row["variant"]: {k: row[k] for k in ("entries", "sends", "conversions")}
        for row in document["variants"]
    }
    assert printed == rows
    text = run("journeys", "report", "trial")
    assert text.returncode == 0, text.stderr
    lines = {line.split()[0]: line.split()[1:5] for line in text.stdout.splitlines()[3:]}
    assert lines["short"] == ["3", "6", "1", "33.3%"]
    assert lines["long"] == ["3", "6", "0", "0.0%"]
    assert lines["holdout"] == ["2", "0", "1", "50.0%"]
    assert lines["total"] == ["8", "12", "2", "25.0%"]
