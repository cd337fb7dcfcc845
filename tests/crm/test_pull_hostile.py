"""Pulls survive hostile CRM values: one contact's bad value never stops the others."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from crm_sync.adapters import make_adapter
from crm_sync.pull import run_pull
from crm_sync.runs import run_push
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.db import Database
from loyalty.models import Member, SyncCursor
from sandbox.hubspot import HubSpotSandbox
from tests.crm.support import add_members, crm_app

KEY = "loyalty_member_id"


def _member(app: App, member_id: int) -> Member:
    with app.database.transaction() as session:
        member = session.get(Member, member_id)
        assert member is not None
        return member


def _edit(sandbox: HubSpotSandbox, *edits: dict[str, str]) -> None:
    """CRM users' edits of the contacts by key (a new contact for an unknown key)."""
    with sandbox.lock:
        by_key = {c.properties.get(KEY): c for c in sandbox.store.contacts.values()}
        for values in edits:
            contact = by_key.get(values[KEY])
            if contact is None:
                sandbox.store.create(values)
            else:
                sandbox.store.write(contact, values)
    time.sleep(0.01)


def _pull_now(app: App) -> None:
    assert isinstance(app.clock, FrozenClock)
    app.clock.set(datetime.now(UTC) + timedelta(milliseconds=5))


def test_a_nul_or_over_long_value_is_rejected_for_its_contact_only(
    app: App, hubspot_sandbox: HubSpotSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    # Given three members and their contacts, two of them carrying values we cannot store
    app = crm_app(app, hubspot=hubspot_sandbox)
    make_adapter(app, "hubspot").ensure_schema()
    nul, long, fine = add_members(app, 3)
    keys = {i: _member(app, i).external_id for i in (nul, long, fine)}
    last_name = _member(app, long).last_name
    run_push(app, "hubspot")
    _edit(
        hubspot_sandbox,
        {KEY: keys[nul], "firstname": "An\x00na", "phone": "+12125550100"},
        {KEY: keys[long], "lastname": "L" * 300},
        {KEY: "c-\x00", "firstname": "Nobody"},
        {KEY: keys[fine], "firstname": "Cy"},
    )
    _pull_now(app)

    # When the pull runs
    with caplog.at_level(logging.WARNING, logger="crm_sync"):
        report = run_pull(app, "hubspot")

    # Then only the unusable values are left out, and the other contacts are applied
    first, second, third = _member(app, nul), _member(app, long), _member(app, fine)
    assert (first.first_name, first.phone) == ("Ann", "+12125550100")
    assert second.last_name == last_name
    assert third.first_name == "Cy"
    assert (report.seen, report.updated, report.invalid) == (4, 2, 3)
    with app.database.transaction() as session:
        cursor = session.get(SyncCursor, ("hubspot", "pull"))
    assert cursor is not None and cursor.cursor == report.cursor
    invalid = [r for r in caplog.records if r.getMessage() == "crm.pull_invalid"]
    assert len(invalid) == 3
    assert not any("\x00" in str(v) or "LLLL" in str(v) for r in invalid for v in vars(r).values())


@pytest.fixture
def refuse_first_name(database: Database) -> Iterator[str]:
    """The database refuses one first name, as it might refuse a value we cannot foresee."""
    refused = "Refused"
    with database.engine.begin() as connection:
        if database.is_sqlite:
            connection.execute(
                text(
                    "CREATE TRIGGER refuse_first_name BEFORE UPDATE ON members "
                    f"WHEN NEW.first_name = '{refused}' BEGIN SELECT RAISE(ABORT, 'no'); END"
                )
            )
        else:
            connection.execute(
                text(
                    "ALTER TABLE members ADD CONSTRAINT refuse_first_name "
                    f"CHECK (first_name IS DISTINCT FROM '{refused}')"
                )
            )
    yield refused
    if not database.is_sqlite:
        with database.engine.begin() as connection:
            connection.execute(text("ALTER TABLE members DROP CONSTRAINT refuse_first_name"))


def test_a_contact_the_database_refuses_does_not_stop_the_pull(
    app: App, hubspot_sandbox: HubSpotSandbox, refuse_first_name: str
) -> None:
    app = crm_app(app, hubspot=hubspot_sandbox)
    make_adapter(app, "hubspot").ensure_schema()
    before, refused, after = add_members(app, 3)
    keys = {i: _member(app, i).external_id for i in (before, refused, after)}
    run_push(app, "hubspot")
    _edit(
        hubspot_sandbox,
        {KEY: keys[before], "firstname": "Bo"},
        {KEY: keys[refused], "firstname": refuse_first_name},
        {KEY: keys[after], "firstname": "Cy"},
    )
    _pull_now(app)

    report = run_pull(app, "hubspot")

    assert _member(app, before).first_name == "Bo"
    assert _member(app, refused).first_name == "Ann"
    assert _member(app, after).first_name == "Cy"
    assert (report.seen, report.updated, report.invalid) == (3, 2, 1)
    with app.database.transaction() as session:
        cursor = session.get(SyncCursor, ("hubspot", "pull"))
    assert cursor is not None and cursor.cursor == report.cursor
