"""POST /api/v1/events: each event stored once, a result per item, one bad item alone."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from starlette.testclient import TestClient

from automations.intake import ingest_file
from automations.runtime.ticks import relay_events
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.models import Consent, Enrollment, Event, LedgerEntry, Member
from tests.api.support import bearer, new_token, problems
from tests.engine.helpers import journey_folder, published, workers
from tests.factories import make_member
from web.api.limits import BATCH_BODY_BYTES


def order(member: str, order_id: str, total: str = "10", **extra: Any) -> dict[str, Any]:
    return {
        "type": "order.completed",
        "member": member,
        "id": f"o-{order_id}",
        "data": {"order_id": order_id, "total": total, "currency": "EUR"},
        **extra,
    }


FAKE_CHANGE = {"delta": 5000, "balance": 5000, "kind": "adjust", "reason": "gift"}


def stored_events(app: App) -> list[Event]:
    with app.database.sessions() as session:
        return list(session.scalars(select(Event).order_by(Event.id)))


def test_a_batch_stores_each_event_once_and_answers_each_item(
    app: App, client: TestClient, auth: dict[str, str]
) -> None:
    # Given a member and a batch with a duplicate and bad items between good ones
    make_member(app, external_id="m-1")
    batch = [
        order("m-1", "1"),
        order("m-1", "1"),  # the same (source, id) again
        {"type": "order.shipped", "member": "m-1"},  # unknown type
        order("m-1", "2", total="-5"),  # payload the type refuses
        {"member": "m-1"},  # no type
        order("ghost", "3"),  # unknown member, no profile
        order("m-1", "4", at="2026-03-01T10:00:00"),  # no offset
        order("m-1", "5", source="loyalty"),  # the reserved source
        "not an object",
        order("m-1", "6"),
        # the program records balance moves itself: a sender cannot fake one
        {"type": "points.changed", "member": "m-1", "id": "p-1", "data": FAKE_CHANGE},
    ]

    # When it is posted
    answer = client.post("/api/v1/events", json={"events": batch}, headers=auth)

    # Then every item has its result, in order, and the good ones are stored
    assert answer.status_code == 202
    body = answer.json()
    summary = [(r["index"], r["status"], r["field"]) for r in body["results"]]
    assert summary == [
        (0, "stored", None),
        (1, "duplicate", None),
        (2, "rejected", "type"),
        (3, "rejected", "data.total"),
        (4, "rejected", "type"),
        (5, "rejected", "member"),
        (6, "rejected", "at"),
        (7, "rejected", "source"),
        (8, "rejected", None),
        (9, "stored", None),
        (10, "rejected", "type"),
    ]
    assert "recorded by the program itself" in body["results"][10]["reason"]
    assert (body["stored"], body["duplicates"], body["rejected"]) == (2, 1, 8)
    assert all(r["reason"] for r in body["results"] if r["status"] == "rejected")
    assert body["results"][0]["event_id"] == "o-1" and body["results"][0]["source"] == "shop"
    events = stored_events(app)
    assert [(e.source, e.external_id) for e in events] == [("shop", "o-1"), ("shop", "o-6")]

    # And sending the batch again stores nothing more
    again = client.post("/api/v1/events", json={"events": batch}, headers=auth).json()
    assert (again["stored"], again["duplicates"]) == (0, 3)
    assert len(stored_events(app)) == 2


def test_one_event_alone_is_one_result_and_its_source_is_the_token_or_its_own(
    app: App, client: TestClient
) -> None:
    make_member(app, external_id="m-1")
    token = bearer(new_token(app, "pos-warsaw", "events:write"))
    first = client.post("/api/v1/events", json=order("m-1", "1"), headers=token).json()
    named = client.post(
        "/api/v1/events", json=order("m-1", "1", source="shopify"), headers=token
    ).json()
    assert [r["status"] for r in first["results"] + named["results"]] == ["stored", "stored"]
    assert [(e.source, e.external_id) for e in stored_events(app)] == [
        ("pos-warsaw", "o-1"),
        ("shopify", "o-1"),
    ]


def test_an_event_without_an_id_gets_one_and_is_answered_with_it(
    app: App, client: TestClient, auth: dict[str, str]
) -> None:
    make_member(app, external_id="m-1")
    event = order("m-1", "1")
    del event["id"]
    [result] = client.post("/api/v1/events", json=event, headers=auth).json()["results"]
    assert result["status"] == "stored" and result["event_id"] == stored_events(app)[0].external_id


def test_bodies_that_are_no_event_are_answered_naming_where(
    client: TestClient, auth: dict[str, str]
) -> None:
    cases: list[tuple[bytes, int, list[str | int]]] = [
        (b"{not json", 400, ["body"]),
        (b"[1, 2]", 422, ["body"]),
        (json.dumps({"events": {"a": 1}}).encode(), 422, ["body", "events"]),
        (json.dumps({"events": [], "extra": 1}).encode(), 422, ["body", "extra"]),
        (json.dumps({"events": [{}] * 1001}).encode(), 422, ["body", "events"]),
    ]
    for body, status, loc in cases:
        answer = client.post(
            "/api/v1/events", content=body, headers={**auth, "Content-Type": "application/json"}
        )
        assert answer.status_code == status, body[:40]
        assert problems(answer)[0]["loc"] == loc


def test_a_body_over_the_limit_is_413_and_stores_nothing(
    app: App, client: TestClient, auth: dict[str, str]
) -> None:
    make_member(app, external_id="m-1")
    filler = "x" * 1100
    batch = [order("m-1", str(n)) for n in range(1000)]
    for event in batch:
        event["data"]["note"] = filler
    big = json.dumps({"events": batch}).encode()
    assert len(big) > BATCH_BODY_BYTES
    answer = client.post(
        "/api/v1/events", content=big, headers={**auth, "Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    assert problems(answer)[0]["loc"] == ["body"]
    assert stored_events(app) == []

    # A member's profile has a smaller limit
    answer = client.put(
        "/api/v1/members/m-1", json={"attributes": {"note": "x" * 70_000}}, headers=auth
    )
    assert answer.status_code == 413


def test_a_full_batch_of_1000_is_taken(app: App, client: TestClient, auth: dict[str, str]) -> None:
    make_member(app, external_id="m-1")
    batch = [order("m-1", str(n)) for n in range(1000)]
    answer = client.post("/api/v1/events", json={"events": batch}, headers=auth)
    assert answer.status_code == 202 and answer.json()["stored"] == 1000


WELCOME = """
id: welcome
name: Welcome
status: active
trigger: {type: event, event: member.enrolled}
entry: {once: true}
steps:
  - id: bonus
    type: award_points
    amount: 50
    reason: welcome bonus
"""


def test_a_sign_up_with_a_profile_creates_the_member_and_enrolls_it_once(
    app: App, client: TestClient, auth: dict[str, str], tmp_path: Path, clock: FrozenClock
) -> None:
    # Given a journey that welcomes members who enrol
    published(app, journey_folder(tmp_path, {"welcome": WELCOME}, {}))
    signup = {
        "type": "member.enrolled",
        "member": "new-1",
        "id": "signup-new-1",
        "profile": {
            "email": "Ada@Example.com",
            "first_name": "Ada",
            "birthday": "not a date",
            "email_consent": True,
            "favourite_colour": "green",
        },
    }

    # When the shop sends the sign-up twice, and then another sign-up event for the same member
    first = client.post("/api/v1/events", json=signup, headers=auth).json()["results"][0]
    second = client.post("/api/v1/events", json=signup, headers=auth).json()["results"][0]
    later = client.post(
        "/api/v1/events", json={**signup, "id": "signup-again"}, headers=auth
    ).json()["results"][0]
    clock.advance(timedelta(seconds=app.settings.event_relay_after_seconds))
    with workers(app):
        assert relay_events(app) == 2  # the web process queued nothing: the relay does

    # Then the member was created once, from the profile, without the invalid birthday
    assert (first["status"], first["member_created"]) == ("stored", True)
    assert first["warnings"] == [
        {"field": "profile.birthday", "reason": "expected YYYY-MM-DD or --MM-DD"}
    ]
    assert (second["status"], second["member_created"]) == ("duplicate", False)
    assert (later["status"], later["member_created"]) == ("stored", False)
    with app.database.sessions() as session:
        member = session.scalar(select(Member).where(Member.external_id == "new-1"))
        assert member is not None
        assert (member.email, member.first_name, member.birthday) == (
            "ada@example.com",
            "Ada",
            None,
        )
        assert member.attributes == {"favourite_colour": "green"}
        consents = session.execute(select(Consent.channel, Consent.granted, Consent.source)).all()
        assert consents == [("email", True, "shop")]
        # And enrolled in the welcome journey once, its bonus posted once
        assert session.scalar(select(func.count(Enrollment.id))) == 1
        assert session.scalars(select(LedgerEntry.delta)).all() == [50]


def test_a_profile_never_touches_a_known_or_erased_member(
    app: App, client: TestClient, auth: dict[str, str]
) -> None:
    make_member(app, external_id="m-1", email="old@example.com")
    make_member(app, external_id="gone", erased_at=app.clock.now())
    event = {"type": "member.enrolled", "member": "m-1", "profile": {"email": "new@example.com"}}
    erased = {"type": "member.enrolled", "member": "gone", "profile": {"email": "x@example.com"}}
    results = client.post("/api/v1/events", json={"events": [event, erased]}, headers=auth).json()[
        "results"
    ]
    assert [(r["status"], r["member_created"], r["field"]) for r in results] == [
        ("stored", False, None),
        ("rejected", False, "member"),
    ]
    with app.database.sessions() as session:
        assert session.scalar(select(Member.email).where(Member.external_id == "m-1")) == (
            "old@example.com"
        )


def test_a_profile_with_an_unusable_value_rejects_only_its_event(
    app: App, client: TestClient, auth: dict[str, str]
) -> None:
    bad = {"type": "member.enrolled", "member": "new-1", "profile": {"first_name": "a\u0000b"}}
    good = {"type": "member.enrolled", "member": "new-2", "profile": {}}
    results = client.post("/api/v1/events", json={"events": [bad, good]}, headers=auth).json()
    assert [(r["status"], r["field"]) for r in results["results"]] == [
        ("rejected", "profile.first_name"),
        ("stored", None),
    ]
    with app.database.sessions() as session:
        assert session.scalars(select(Member.external_id)).all() == ["new-2"]


def test_ingested_json_lines_may_carry_a_profile(app: App, tmp_path: Path) -> None:
    lines = tmp_path / "events.jsonl"
    lines.write_text(
        json.dumps({"type": "member.enrolled", "member": "new-1", "profile": {"locale": "pl"}})
        + "\n"
        + json.dumps({"type": "member.enrolled", "member": "new-2", "profile": "not an object"})
        + "\n"
    )
    with workers(app):
        report = ingest_file(app, lines, source="import")
    assert (report.stored, [number for number, _ in report.errors]) == (1, [2])
    with app.database.sessions() as session:
        assert session.scalar(select(Member.locale).where(Member.external_id == "new-1")) == "pl"
