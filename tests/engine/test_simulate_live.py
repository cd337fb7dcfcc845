"""The simulator on a database in use: members mid-journey, points, messages already sent."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import func, select

from automations.runtime.ticks import relay_messages
from cli import main
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.event_types import EventInput
from loyalty.models import Enrollment, LedgerEntry, Message, Suppression
from loyalty.states import EnrollmentState, MessageState
from tests.engine.helpers import enrollments, journey_folder, messages, published, send_event
from tests.engine.helpers import workers as engine_workers
from tests.engine.test_simulate import NUDGE, TEMPLATES, env
from tests.factories import make_member

NUDGE_WITH_GOAL = (
    NUDGE.replace("status: draft", "status: active")
    + "goal: {event: reward.redeemed, within: 7d}\n"
)
ORDER_AT = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # 08:00 in New York
SENT_AT = datetime(2026, 3, 10, 13, 0, tzinfo=UTC)  # 09:00 in New York, quiet hours over


def _member(app: App, name: str) -> None:
    make_member(
        app,
        external_id=name,
        first_name=name.title(),
        email=f"{name}@example.com",
        phone={"ann": "+14155550100", "bob": "+14155550101", "cal": "+14155550102"}[name],
        email_consent=True,
        sms_consent=True,
        time_zone="America/New_York",
    )


def _order(member: str, at: str, order_id: str) -> dict[str, Any]:
    data = {"order_id": order_id, "total": 10, "currency": "USD"}
    return {"type": "order.completed", "member": member, "id": order_id, "at": at, "data": data}


def _redeem(member: str, at: str) -> dict[str, Any]:
    return {
        "type": "reward.redeemed",
        "member": member,
        "id": "r-1",
        "at": at,
        "data": {"points": 10},
    }


def _live_program(app: App, tmp_path: Path) -> Path:
    """Given ann and cal mid-journey (SMS sent, waiting two days) and bob's phone suppressed."""
    folder = journey_folder(tmp_path, {"nudge": NUDGE_WITH_GOAL}, TEMPLATES)
    published(app, folder)
    for name in ("ann", "bob", "cal"):
        _member(app, name)
    for name in ("ann", "cal"):
        data = {"order_id": f"real-{name}", "total": 10, "currency": "USD"}
        send_event(
            app,
            EventInput(
                type="order.completed", member=name, id=f"real-{name}", at=ORDER_AT, data=data
            ),
        )
    assert isinstance(app.clock, FrozenClock)
    app.clock.set(SENT_AT)
    with engine_workers(app):
        relay_messages(app)
    with app.database.transaction() as session:
        session.add(
            Suppression(channel="sms", address="+14155550101", reason="stop", created_at=SENT_AT)
        )
    assert {e.state for e in enrollments(app)} == {EnrollmentState.WAITING}
    assert {m.state for m in messages(app)} == {MessageState.SENT}
    return folder


def _counts(app: App) -> list[int]:
    with app.database.sessions() as session:
        return [
            session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Enrollment, Message, LedgerEntry, Suppression)
        ]


def test_simulate_goes_on_from_the_databases_state(app: App, tmp_path: Path) -> None:
    folder = _live_program(app, tmp_path)
    before = _counts(app)
    events = tmp_path / "events.jsonl"
    # 16:00 in New York: cal's second SMS would be her second marketing SMS within a day.
    rows = [
        _redeem("ann", "2026-03-10T20:00:00Z"),
        _order("bob", "2026-03-10T20:00:00Z", "o-bob"),
        _order("cal", "2026-03-10T20:00:00Z", "o-cal"),
    ]
    events.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")

    result = CliRunner().invoke(
        main,
        [
            "journeys",
            "simulate",
            "--from",
            "2026-03-10",
            "--to",
            "2026-03-13",
            "--events",
            str(events),
            "--json",
        ],
        env=env(app, folder),
    )

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    timeline = [
        (r["at"], r["member"], r["action"], r["step"], r.get("suppressed"))
        for r in document["timeline"]
    ]
    # What already happened (ann's and cal's entries, points and SMS) is not replayed;
    # ann's redemption converts her; cal's first enrollment goes on after its wait.
    assert timeline == [
        ("2026-03-10T20:00:00Z", "ann", "goal", "pause", None),
        ("2026-03-10T20:00:00Z", "bob", "enter", "", None),
        ("2026-03-10T20:00:00Z", "bob", "award_points", "bonus", None),
        ("2026-03-10T20:00:00Z", "bob", "send_sms", "thanks_sms", "stop"),
        ("2026-03-10T20:00:00Z", "cal", "enter", "", None),
        ("2026-03-10T20:00:00Z", "cal", "award_points", "bonus", None),
        ("2026-03-10T20:00:00Z", "cal", "send_sms", "thanks_sms", "frequency_cap"),
        ("2026-03-12T12:00:00Z", "cal", "send_email", "thanks_mail", None),
        ("2026-03-12T12:00:00Z", "cal", "exit", "thanks_mail", None),
        ("2026-03-12T20:00:00Z", "bob", "send_email", "thanks_mail", None),
        ("2026-03-12T20:00:00Z", "bob", "exit", "thanks_mail", None),
        ("2026-03-12T20:00:00Z", "cal", "send_email", "thanks_mail", None),
        ("2026-03-12T20:00:00Z", "cal", "exit", "thanks_mail", None),
    ]
    summary = document["summary"]["nudge"]
    assert (summary["entries"], summary["conversions"], summary["points"]) == (2, 1, 50)
    assert summary["sends"] == {"email": 3}
    assert _counts(app) == before  # the real database is untouched


def test_simulate_prints_the_conversions_of_each_journey(app: App, tmp_path: Path) -> None:
    folder = _live_program(app, tmp_path)
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(_redeem("ann", "2026-03-11T15:00:00Z")) + "\n")

    result = CliRunner().invoke(
        main,
        [
            "journeys",
            "simulate",
            "--from",
            "2026-03-11",
            "--to",
            "2026-03-11",
            "--events",
            str(events),
        ],
        env=env(app, folder),
    )

    assert result.exit_code == 0, result.output
    # ann and cal entered before the period: they count as in flight, and ann's conversion too.
    assert result.output.splitlines()[-1].startswith(
        "nudge: 0 entries (+2 in flight at the start), 1 conversions, no sends"
    )


def test_simulate_refuses_a_period_that_ends_before_it_starts(app: App, tmp_path: Path) -> None:
    folder = journey_folder(tmp_path, {"nudge": NUDGE}, TEMPLATES)

    result = CliRunner().invoke(
        main,
        ["journeys", "simulate", "--from", "2026-04-05", "--to", "2026-04-01"],
        env=env(app, folder),
    )

    assert result.exit_code == 2
    assert result.stderr == "error: --from 2026-04-05 is after --to 2026-04-01\n"
    assert result.exception is None or isinstance(result.exception, SystemExit)
