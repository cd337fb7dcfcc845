"""Console pages over a running journey: per-step figures, why a member is not in, pausing."""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import select
from starlette.testclient import TestClient

from channels.webhooks import apply_sendgrid_events
from loyalty.app import App
from loyalty.db import downgrade, upgrade
from loyalty.event_types import EventInput
from loyalty.models import ConsoleAction, EntryRefusal, JSONType, Member, Message
from tests.console.support import make_user, post_form, sign_in, text_of
from tests.engine.helpers import enrollments, journey_folder, published, send_event
from tests.factories import make_member

THANKS = """
id: thanks
name: Thanks for ordering
status: active
trigger: {type: event, event: order.completed}
entry: {every_time: true}
steps:
  - id: bonus
    type: award_points
    amount: 10
    reason: Thank-you bonus
  - id: vip
    type: branch
    if: {field: total_spent, gte: 100}
    then: vip_email
  - id: email
    type: send_email
    template: thanks
    next: end
  - id: vip_email
    type: send_email
    template: thanks
"""
CLUB = """
id: club
name: Club news
status: active
trigger: {type: event, event: order.completed}
audience: {field: email_consent, eq: true}
entry: {every_time: true}
steps:
  - id: hello
    type: send_email
    template: thanks
"""
TEMPLATES = {"en/thanks.email": '---\nsubject: "Thanks"\n---\n<p>Thanks!</p>\n'}


def order(member: str, order_id: str, total: str = "30") -> EventInput:
    return EventInput(
        "order.completed",
        member,
        id=f"e-{order_id}",
        data={"order_id": order_id, "total": total, "currency": "EUR"},
    )


def member_id(app: App, external_id: str) -> int:
    with app.database.sessions() as session:
        found = session.scalar(select(Member.id).where(Member.external_id == external_id))
    assert found is not None
    return found


def step_row(html: str, step: str) -> str:
    found = re.search(rf'<tr data-step="{step}">(.*?)</tr>', html, re.S)
    assert found, f"no row for step {step}"
    return text_of(found.group(1))


def test_the_journey_page_counts_each_step(
    console: App, client: TestClient, tmp_path: Path
) -> None:
    # Given two members who order, one without email consent
    published(console, journey_folder(tmp_path, {"thanks": THANKS}, TEMPLATES))
    make_member(console, external_id="m-1", email="a@example.com", email_consent=True)
    make_member(console, external_id="m-2", email="b@example.com", email_consent=False)
    send_event(console, order("m-1", "1"))
    send_event(console, order("m-2", "2"))
    make_user(console, "vera@example.com", "viewer")
    sign_in(client, "vera@example.com")

    # When the journey page is opened
    page = client.get("/console/journeys/thanks")

    # Then each step shows who entered it and what its messages did
    assert page.status_code == 200
    assert step_row(page.text, "bonus").startswith("bonus award_points 2 0")
    assert step_row(page.text, "email") == "email send_email 2 0 1 1 no_consent: 1 0 0"
    assert step_row(page.text, "vip_email").startswith("vip_email send_email 0 0 0 0")
    assert '<g class="step" data-step="vip">' in page.text  # the diagram
    assert ">if</text>" in page.text and ">else</text>" in page.text
    assert "valid" in text_of(page.text)
    listing = text_of(client.get("/console/journeys").text)
    assert "thanks Thanks for ordering active 1 event 0 2 0 2 0" in listing


def test_why_a_member_did_not_enter_is_recorded_once_and_shown(
    console: App, client: TestClient, tmp_path: Path
) -> None:
    published(console, journey_folder(tmp_path, {"club": CLUB}, TEMPLATES))
    make_member(console, external_id="m-1", email="a@example.com", email_consent=False)
    send_event(console, order("m-1", "1"))
    send_event(console, order("m-1", "2"))

    assert enrollments(console) == []
    with console.database.sessions() as session:
        [refusal] = session.scalars(select(EntryRefusal)).all()
    assert (refusal.journey_id, refusal.reason) == ("club", "audience")

    make_user(console, "vera@example.com", "viewer")
    sign_in(client, "vera@example.com")
    found = client.get("/console/members", params={"q": "A@example.com"})
    assert f'href="/console/members/{member_id(console, "m-1")}"' in found.text
    page = text_of(client.get(f"/console/members/{member_id(console, 'm-1')}").text)
    assert (
        'club not entered audience: not in the audience {"field":"email_consent","eq":true}' in page
    )


def test_a_paused_journey_lets_no_new_member_in_until_resumed(
    console: App, client: TestClient, tmp_path: Path
) -> None:
    published(console, journey_folder(tmp_path, {"thanks": THANKS}, TEMPLATES))
    make_member(console, external_id="m-1", email="a@example.com", email_consent=True)
    make_user(console, "mark@example.com", "marketer")
    sign_in(client, "mark@example.com")

    # When a marketer pauses the journey (and nothing else can be done to it)
    assert post_form(client, "/console/journeys/thanks/delete").status_code == 404
    assert post_form(client, "/console/journeys/thanks/pause").status_code == 303
    page = text_of(client.get("/console/journeys/thanks").text)
    assert "Status: paused since" in page and "by mark@example.com" in page

    # Then an order enters nobody, and the member page says why
    send_event(console, order("m-1", "1"))
    assert enrollments(console) == []
    member = text_of(client.get(f"/console/members/{member_id(console, 'm-1')}").text)
    assert "thanks not entered paused: the journey is paused in the console" in member

    # And after resuming, the next order enters the member
    assert post_form(client, "/console/journeys/thanks/resume").status_code == 303
    send_event(console, order("m-1", "2"))
    assert [e.occurrence for e in enrollments(console)] == ["order:2"]
    with console.database.sessions() as session:
        actions = [(a.user_email, a.action) for a in session.scalars(select(ConsoleAction))]
    assert actions == [("mark@example.com", "pause"), ("mark@example.com", "resume")]


def test_messages_filter_and_show_their_policy_decision(
    console: App, client: TestClient, tmp_path: Path
) -> None:
    published(console, journey_folder(tmp_path, {"thanks": THANKS}, TEMPLATES))
    make_member(console, external_id="m-1", email="a@example.com", email_consent=True)
    make_member(console, external_id="m-2", email="b@example.com", email_consent=False)
    send_event(console, order("m-1", "1"))
    send_event(console, order("m-2", "2"))
    make_user(console, "vera@example.com", "viewer")
    sign_in(client, "vera@example.com")

    listed = text_of(client.get("/console/messages", params={"state": "suppressed"}).text)
    assert "m-2 thanks / email email suppressed no_consent" in listed
    assert "m-1" not in listed
    assert "No message matches" in client.get("/console/messages?journey=other").text
    every = text_of(client.get("/console/messages", params={"channel": "email"}).text)
    assert "m-1 thanks / email email sent send" in every

    suppressed = re.search(
        r'href="/console/messages/(\d+)">\d+</a></td><td>m-2', client.get("/console/messages").text
    )
    assert suppressed is not None
    page = text_of(client.get(f"/console/messages/{suppressed.group(1)}").text)
    assert "policy decision no_consent" in page and "state suppressed" in page
    assert client.get("/console/messages/999999").status_code == 404


SPLIT = """
id: ab
name: A/B
status: active
trigger: {type: event, event: order.completed}
entry: {every_time: true}
goal: {event: reward.redeemed, within: 7d}
steps:
  - id: pick
    type: split
    variants:
      - {name: short, percent: 45, next: mail}
      - {name: long, percent: 45, next: mail}
    holdout: 10
  - id: mail
    type: send_email
    template: thanks
"""


def test_the_journey_page_shows_split_variants(
    console: App, client: TestClient, tmp_path: Path
) -> None:
    published(console, journey_folder(tmp_path, {"ab": SPLIT}, TEMPLATES))
    for n in range(12):
        make_member(console, external_id=f"s-{n}", email=f"s{n}@example.com", email_consent=True)
        send_event(console, order(f"s-{n}", f"{n}"))
    make_user(console, "vera@example.com", "viewer")
    sign_in(client, "vera@example.com")

    page = client.get("/console/journeys/ab").text

    rows = re.findall(r'<tr data-variant="([^"]*)"><td>[^<]*</td>\s*<td>(\d+)</td>', page)
    assert [name for name, _ in rows] == ["short", "long", "holdout"]
    assert sum(int(entries) for _, entries in rows) == 12
    assert "Goal: reward.redeemed within 7d" in text_of(page)


def sendgrid_event(message_id: int, kind: str, n: int) -> dict[str, object]:
    return {"event": kind, "message_id": str(message_id), "sg_event_id": f"sg-{kind}-{n}"}


def delivery_rows(html: str) -> list[tuple[str, str]]:
    """(provider, kind) of each delivery event the message page lists."""
    found = re.search(r'<table id="deliveries">(.*?)</table>', html, re.S)
    if found is None:
        return []
    cells = re.findall(r"<td>(sendgrid|twilio)</td><td>([^<]+)</td>", found.group(1))
    return [(provider, kind) for provider, kind in cells]


def test_a_message_shows_its_delivery_events_however_many_others_arrived(
    console: App, client: TestClient, tmp_path: Path
) -> None:
    # Given a sent email, and thousands of other messages' events stored after it
    published(console, journey_folder(tmp_path, {"thanks": THANKS}, TEMPLATES))
    make_member(console, external_id="m-1", email="a@example.com", email_consent=True)
    send_event(console, order("m-1", "1"))
    with console.database.sessions() as session:
        sent = session.scalar(select(Message.id).where(Message.state == "sent"))
    assert sent is not None
    others = [sendgrid_event(10_000 + n, "delivered", n) for n in range(2_500)]
    mine = [sendgrid_event(sent, "delivered", -1), sendgrid_event(sent, "open", -2)]
    with console.database.transaction() as session:
        apply_sendgrid_events(session, others, now=console.clock.now())
        apply_sendgrid_events(session, mine, now=console.clock.now())
    make_user(console, "vera@example.com", "viewer")
    sign_in(client, "vera@example.com")

    # When its page is opened
    page = client.get(f"/console/messages/{sent}").text

    # Then it lists its own delivery events, and no other message's
    assert delivery_rows(page) == [("sendgrid", "delivered"), ("sendgrid", "open")]


def test_events_stored_before_the_migration_are_found_by_their_message(
    console: App, client: TestClient, tmp_path: Path
) -> None:
    # Given a sent email whose SendGrid event was stored before events named their message
    published(console, journey_folder(tmp_path, {"thanks": THANKS}, TEMPLATES))
    make_member(console, external_id="m-1", email="a@example.com", email_consent=True)
    send_event(console, order("m-1", "1"))
    with console.database.sessions() as session:
        sent = session.scalar(select(Message.id).where(Message.state == "sent"))
    assert sent is not None
    downgrade(console.database, "0015")
    events = sa.table(
        "provider_events",
        *(sa.column(c) for c in ("provider", "provider_event_id", "kind", "received_at")),
        sa.column("payload", JSONType),
    )
    with console.database.transaction() as session:
        session.execute(
            sa.insert(events).values(
                provider="sendgrid",
                provider_event_id="sg-old",
                kind="bounce",
                payload=sendgrid_event(sent, "bounce", 0),
                received_at=console.clock.now(),
            )
        )

    # When the database is migrated
    upgrade(console.database)

    # Then the message page finds it
    make_user(console, "vera@example.com", "viewer")
    sign_in(client, "vera@example.com")
    assert delivery_rows(client.get(f"/console/messages/{sent}").text) == [("sendgrid", "bounce")]
