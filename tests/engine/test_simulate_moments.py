"""The simulator's clock stops where the engine has work: date journeys at `at` in each zone."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from automations.simulate import simulate
from loyalty.app import App
from tests.engine.helpers import EMAIL, journey_folder
from tests.factories import make_member

BIRTHDAY = """
id: birthday
name: Birthday
status: active
locales: [en]
trigger: {type: date, field: birthday, at: "09:00"}
entry: {once_per: year}
steps:
  - {id: card, type: send_email, template: hello}
"""


def test_each_member_enters_a_date_journey_at_at_in_their_zone_even_an_unreadable_one(
    app: App, tmp_path: Path
) -> None:
    folder = journey_folder(
        tmp_path, {"birthday": BIRTHDAY}, {"en/hello.email": EMAIL.replace("{{ body }}", "Hi")}
    )
    program = App(app.settings.model_copy(update={"journeys_dir": folder}), app.database, app.clock)
    for name, zone in (("tokyo", "Asia/Tokyo"), ("lima", "America/Lima"), ("odd", "Mars/Base")):
        make_member(
            program,
            external_id=name,
            email=f"{name}@example.com",
            email_consent=True,
            time_zone=zone,
            birth_month=5,
            birth_day=2,
        )

    result = simulate(
        program,
        start=datetime(2026, 5, 1, tzinfo=UTC),
        end=datetime(2026, 5, 3, 23, 59, tzinfo=UTC),
    )

    assert result.problems == []
    sends = [(r["at"], r["member"]) for r in result.records if r["action"] == "send_email"]
    # 09:00 in Tokyo (UTC+9) and Lima (UTC-5); an unreadable zone is the program's (UTC).
    assert sends == [
        ("2026-05-02T00:00:00Z", "tokyo"),
        ("2026-05-02T09:00:00Z", "odd"),
        ("2026-05-02T14:00:00Z", "lima"),
    ]


def test_a_member_an_event_creates_in_a_zone_not_in_use_still_enters_a_date_journey(
    app: App, tmp_path: Path
) -> None:
    """Scans run at `at` in each zone in use at the start; a member an event creates in
    another zone is entered by the next scan of their local day, as the engine's tick would."""
    folder = journey_folder(
        tmp_path, {"birthday": BIRTHDAY}, {"en/hello.email": EMAIL.replace("{{ body }}", "Hi")}
    )
    program = App(app.settings.model_copy(update={"journeys_dir": folder}), app.database, app.clock)
    make_member(
        program,
        external_id="lima",
        email="lima@example.com",
        email_consent=True,
        time_zone="America/Lima",
        birth_month=5,
        birth_day=2,
    )
    joined = {
        "type": "member.enrolled",
        "member": "tokyo",
        "id": "j-tokyo",
        "at": "2026-05-01T12:00:00Z",
        "data": {},
        "profile": {
            "email": "tokyo@example.com",
            "email_consent": "true",
            "time_zone": "Asia/Tokyo",
            "birthday": "--05-02",
        },
    }
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(joined) + "\n", encoding="utf-8")

    result = simulate(
        program,
        start=datetime(2026, 5, 1, tzinfo=UTC),
        end=datetime(2026, 5, 3, 23, 59, tzinfo=UTC),
        events_file=events,
    )

    assert result.problems == []
    sends = [(r["at"], r["member"]) for r in result.records if r["action"] == "send_email"]
    # Tokyo's 09:00 (00:00 UTC) is no moment of the walk: the program's zone's 09:00 (UTC)
    # is the first scan after it, still on the member's local 2 May.
    assert sends == [("2026-05-02T09:00:00Z", "tokyo"), ("2026-05-02T14:00:00Z", "lima")]
