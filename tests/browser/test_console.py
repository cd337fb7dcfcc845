"""The console in Chromium against real processes: roles, per-step counts, why, replay, pause."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright
from sqlalchemy import select

from loyalty.event_types import EventInput
from loyalty.events import park_event, record
from loyalty.models import (
    DeadLetter,
    Enrollment,
    EntryRefusal,
    Event,
    Member,
    Message,
    SchedulerTick,
)
from loyalty.settings import load_settings
from tests.browser.conftest import ROLES, SOON_DAYS, Site, email_of
from tests.console.support import PASSWORD
from tests.processes import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright, chromium: Path) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
    yield launched
    launched.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Screenshots of the pages a test saw (in pytest's tmp folder, never committed)."""
    folder = tmp_path / "screenshots"
    folder.mkdir()
    return folder


def signed_in(browser: Browser, site: Site, role: str) -> Page:
    page = browser.new_context(base_url=site.base).new_page()
    page.goto("/console/journeys")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Email").fill(email_of(role))
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("header .who")).to_have_text(f"{email_of(role)} ({role})")
    return page


def birthday_sends_settled(site: Site) -> bool:
    with site.database.sessions() as session:
        states = dict(
            session.execute(
                select(Member.external_id, Message.state)
                .join(Member, Member.id == Message.member_id)
                .where(Message.journey_id == "birthday_bonus", Message.step_id == "birthday_email")
            ).all()
        )
    return states == {"b-yes": "sent", "b-no": "suppressed"}


def ticked(site: Site, job: str) -> bool:
    with site.database.sessions() as session:
        return session.get(SchedulerTick, job) is not None


def test_each_role_sees_what_it_may_and_is_refused_the_rest(
    browser: Browser, site: Site, shots: Path
) -> None:
    # (the Operations page shows the scheduler's jobs once it has run them)
    wait_for(lambda: ticked(site, "date_triggers"), "the scheduler's first run", logs=site.logs)
    for role in ROLES:
        page = signed_in(browser, site, role)
        expect(page.locator("#journeys tr[data-journey='birthday_bonus']")).to_be_visible()
        page.screenshot(path=shots / f"journeys-{role}.png", full_page=True)
        answer = page.goto("/console/operations")
        assert answer is not None
        if role == "operator":
            assert answer.status == 200
            expect(page.get_by_role("heading", name="Dead letters")).to_be_visible()
            # The scheduler's jobs with their last run, and who leads
            expect(page.locator("#ticks tr[data-tick='date_triggers']")).to_be_visible()
            expect(page.locator("#leader")).not_to_contain_text("none")
        else:
            assert answer.status == 403
            expect(page.get_by_text("This needs the operator role")).to_be_visible()
        page.screenshot(path=shots / f"operations-{role}.png", full_page=True)
        page.goto("/console/journeys/welcome")
        pause = page.get_by_role("button", name="Pause journey")
        expect(pause).to_have_count(0 if role == "viewer" else 1)
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.context.close()


def test_the_birthday_journey_shows_its_per_step_counts_after_sends(
    browser: Browser, site: Site, shots: Path
) -> None:
    wait_for(lambda: birthday_sends_settled(site), "the birthday emails", logs=site.logs)
    page = signed_in(browser, site, "viewer")
    page.goto("/console/journeys/birthday_bonus")
    bonus = page.locator("#step-figures tr[data-step='bonus']")
    expect(bonus.locator(".entered")).to_have_text("2")
    email = page.locator("#step-figures tr[data-step='birthday_email']")
    expect(email.locator(".entered")).to_have_text("2")
    expect(email.locator(".sent")).to_have_text("1")
    expect(email.locator(".suppressed")).to_contain_text("no_consent: 1")
    expect(page.locator("svg.diagram g[data-step='has_sms_consent']")).to_be_visible()
    expect(page.locator("#validation")).to_have_text("valid")
    page.screenshot(path=shots / "journey-birthday.png", full_page=True)
    page.context.close()


def test_a_member_refused_for_lack_of_consent_shows_the_reason(
    browser: Browser, site: Site, shots: Path
) -> None:
    wait_for(lambda: birthday_sends_settled(site), "the birthday emails", logs=site.logs)
    page = signed_in(browser, site, "marketer")
    page.goto("/console/members")
    page.get_by_label("External id, email or phone").fill("no@example.com")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="b-no").click()
    why = page.locator("#why tr[data-journey='birthday_bonus']")
    expect(why.locator(".reason")).to_contain_text("birthday_email suppressed: no_consent")
    expect(page.locator("#messages .decision").first).to_have_text("no_consent")
    page.screenshot(path=shots / "member-b-no.png", full_page=True)

    # The message filters update the list in place (htmx): the page is not loaded again
    page.goto("/console/messages")
    page.evaluate("window.loadedOnce = true")
    page.get_by_label("State").select_option("suppressed")
    expect(page).to_have_url(re.compile(r"state=suppressed"))
    expect(page.locator("#message-list")).to_contain_text("b-no")
    expect(page.locator("#message-list")).not_to_contain_text("b-yes")
    assert page.evaluate("window.loadedOnce") is True
    page.screenshot(path=shots / "messages-suppressed.png", full_page=True)
    page.context.close()


def test_an_operator_replays_a_dead_letter(browser: Browser, site: Site, shots: Path) -> None:
    # Given an order whose processing failed for good: parked, with its dead letter
    settings = load_settings(database_url=site.database.url, redis_url=None)
    with site.database.transaction() as session:
        member = session.scalar(select(Member).where(Member.external_id == "b-yes"))
        assert member is not None
        before = member.points_balance
        order = EventInput(
            "order.completed",
            "b-yes",
            id="order-replayed",
            data={"order_id": "replayed", "total": "40", "currency": "EUR"},
        )
        now = datetime.now(UTC)
        event = record(session, order, settings=settings, now=now).row
        session.flush()
        park_event(session, event.id, "RuntimeError: the shop was down", now=now)
        dead = DeadLetter(
            message_id=uuid.uuid4().hex,
            queue="events",
            actor="process_event",
            args={"args": [event.id], "kwargs": {}},
            error="RuntimeError: the shop was down",
            failed_at=now,
        )
        session.add(dead)
        session.flush()
        dead_id, event_id = dead.id, event.id

    # When an operator replays it from the operations page
    page = signed_in(browser, site, "operator")
    page.goto("/console/operations")
    row = page.locator(f"#dead-letters tr[data-dead-letter='{dead_id}']")
    expect(row).to_contain_text("RuntimeError: the shop was down")
    page.screenshot(path=shots / "operations-dead-letter.png", full_page=True)
    row.get_by_role("button", name="Replay").click()

    # Then it leaves the list, and the worker processes the order: its points land
    expect(page.locator("#no-dead-letters")).to_be_visible()

    def processed() -> bool:
        with site.database.sessions() as session:
            return (
                session.scalar(select(Event.processed_at).where(Event.id == event_id)) is not None
            )

    wait_for(processed, "the replayed order", logs=site.logs)
    with site.database.sessions() as session:
        balance = session.scalar(select(Member.points_balance).where(Member.external_id == "b-yes"))
        replayed = session.get(DeadLetter, dead_id)
    assert balance == before + 40
    assert replayed is not None and replayed.replayed_at is not None
    page.context.close()


def test_a_paused_journey_lets_no_new_member_in(browser: Browser, site: Site, shots: Path) -> None:
    # Given a marketer who pauses the welcome journey
    page = signed_in(browser, site, "marketer")
    page.goto("/console/journeys/welcome")
    page.get_by_role("button", name="Pause journey").click()
    expect(page.locator("#status")).to_have_text("paused")
    expect(page.locator("#actions")).to_contain_text("marketer@example.com")
    page.screenshot(path=shots / "journey-paused.png", full_page=True)

    # When a member signs up (the event the welcome journey starts on)
    site.cli("events", "emit", "member.enrolled", "--member", "w-new", "--id", "signup-w-new")

    def refused() -> bool:
        with site.database.sessions() as session:
            return (
                session.scalar(
                    select(EntryRefusal.reason)
                    .join(Member, Member.id == EntryRefusal.member_id)
                    .where(Member.external_id == "w-new", EntryRefusal.journey_id == "welcome")
                )
                == "paused"
            )

    # Then nobody enters, and the member page says the journey is paused
    wait_for(refused, "the welcome journey to refuse w-new", logs=site.logs)
    with site.database.sessions() as session:
        entered = session.scalar(select(Enrollment.id).where(Enrollment.journey_id == "welcome"))
    assert entered is None
    page.goto("/console/members?q=w-new")
    page.get_by_role("link", name="w-new").click()
    why = page.locator("#why tr[data-journey='welcome']")
    expect(why.locator(".outcome")).to_have_text("not entered")
    expect(why.locator(".reason")).to_contain_text("paused")
    page.screenshot(path=shots / "member-w-new.png", full_page=True)
    page.context.close()


def test_preview_and_simulate(browser: Browser, site: Site, shots: Path) -> None:
    page = signed_in(browser, site, "marketer")

    # The email as the member would see it, framed without scripts; the SMS with segments
    page.goto("/console/preview?journey=birthday_bonus&member=b-yes")
    email = page.locator("section[data-step='birthday_email']")
    expect(email.locator("iframe.email")).to_have_attribute("sandbox", "")
    expect(page.frame_locator("iframe.email").locator("body")).to_contain_text("Ada")
    expect(page.locator("section[data-step='birthday_sms'] .segments")).to_contain_text(
        "segment(s)"
    )
    page.screenshot(path=shots / "preview.png", full_page=True)

    # A simulation over the coming week runs apart from the server and, when done, shows
    # w-new's birthday: one entry, the email on that day, and the timeline
    page.goto("/console/simulate")
    page.get_by_label("Journey").select_option("birthday_bonus")
    page.get_by_label("To").fill(str(datetime.now(UTC).date() + timedelta(days=SOON_DAYS + 2)))
    page.get_by_role("button", name="Simulate").click()
    expect(page.locator("#progress")).to_contain_text("Done in", timeout=120_000)
    summary = page.locator("#summary tr[data-journey='birthday_bonus']")
    expect(summary.locator(".entries")).to_have_text("1")
    birthday = datetime.now(UTC).date() + timedelta(days=SOON_DAYS)
    day = page.locator("#per-day tr", has_text=str(birthday)).locator("td")
    expect(day).to_have_text([str(birthday), "1", "0"])
    expect(page.locator("svg.chart rect")).to_have_count(1)
    expect(page.locator("#timeline")).to_contain_text("w-new")
    page.screenshot(path=shots / "simulation.png", full_page=True)
    page.context.close()
