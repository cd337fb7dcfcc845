"""Pulls apply CRM edits by the ownership rule; erasure reaches both CRMs."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from hubspot.crm.contacts import SimplePublicObjectInput
from sqlalchemy import select

import crm_sync.hubspot
import sandbox.hubspot
from crm_sync.adapters import make_adapter
from crm_sync.hubspot import HubSpotAdapter
from crm_sync.pull import decide, run_pull
from crm_sync.runs import erase_member, run_push
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.models import Consent, CrmLink, Member, SyncCursor
from loyalty.pacing import RollingWindow
from sandbox.hubspot import HubSpotSandbox
from sandbox.salesforce import SalesforceSandbox
from tests.crm.support import add_members, crm_app

UPSERT = "/crm/v3/objects/contacts/batch/upsert"


def _member(app: App, member_id: int) -> Member:
    with app.database.transaction() as session:
        member = session.get(Member, member_id)
        assert member is not None
        return member


def _now(app: App, ahead: timedelta = timedelta(milliseconds=5)) -> None:
    """The emulators stamp edits with the real time; the frozen clock follows it."""
    assert isinstance(app.clock, FrozenClock)
    app.clock.set(datetime.now(UTC) + ahead)


@pytest.mark.parametrize(
    ("theirs", "ours", "pushed", "owner", "known", "expected"),
    [
        ("a", "a", "x", "crm", True, "same"),
        ("a", "b", "a", "crm", True, "ours"),
        ("c", "a", "a", "loyalty", True, "take"),
        ("c", "b", "a", "crm", True, "take"),
        ("c", "b", "a", "loyalty", True, "keep"),
        ("c", "b", None, "loyalty", False, "keep"),
    ],
)
def test_the_ownership_rule(
    theirs: str, ours: str, pushed: str | None, owner: str, known: bool, expected: str
) -> None:
    assert decide(theirs, ours, pushed, owner, known) == expected


def test_a_hubspot_edit_of_phone_and_consent_flows_back_by_the_ownership_rule(
    app: App, hubspot_sandbox: HubSpotSandbox
) -> None:
    app = crm_app(app, hubspot=hubspot_sandbox)
    make_adapter(app, "hubspot").ensure_schema()
    edited, conflicted, _ = add_members(app, 3, phone="+48600100200")
    run_push(app, "hubspot")
    adapter = make_adapter(app, "hubspot")
    assert isinstance(adapter, HubSpotAdapter)
    ids = {link.member_id: link.crm_id for link in _links(app, "hubspot")}
    api = adapter.client.crm.contacts.basic_api  # a CRM user's edits, through the client
    api.update(
        ids[edited],
        SimplePublicObjectInput(
            properties={"phone": "+12125550100", "loyalty_sms_consent": "true"}
        ),
    )
    api.update(
        ids[conflicted],
        SimplePublicObjectInput(properties={"phone": "+48600100299", "email": "crm@example.com"}),
    )
    with app.database.transaction() as session:
        member = session.get(Member, conflicted)
        assert member is not None
        member.email, member.phone = "ours@example.com", "+48600100201"
    _now(app)
    started = app.clock.now()

    report = run_pull(app, "hubspot")

    first, second = _member(app, edited), _member(app, conflicted)
    assert (first.phone, first.sms_consent) == ("+12125550100", True)
    assert second.phone == "+48600100299"  # phone belongs to the CRM
    assert second.email == "ours@example.com"  # email belongs to loyalty
    assert report.conflicts_kept == 1 and report.updated == 2
    with app.database.transaction() as session:
        consent = session.scalars(select(Consent).where(Consent.member_id == edited)).one()
        cursor = session.get(SyncCursor, ("hubspot", "pull"))
    assert (consent.channel, consent.granted, consent.source) == ("sms", True, "hubspot")
    assert cursor is not None and cursor.cursor is not None
    assert datetime.fromisoformat(cursor.cursor) < started
    # What came from the CRM is not sent back; our kept email is.
    hubspot_sandbox.recorder.clear()
    run_push(app, "hubspot")
    (call,) = hubspot_sandbox.requests(path=UPSERT)
    (sent,) = call.json()["inputs"]
    assert sent["properties"]["email"] == "ours@example.com"


def _links(app: App, crm: str) -> list[CrmLink]:
    with app.database.transaction() as session:
        return list(session.scalars(select(CrmLink).where(CrmLink.crm == crm)))


def test_search_restarts_from_the_last_value_before_the_cap(
    app: App, hubspot_sandbox: HubSpotSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox.hubspot, "SEARCH_RESULT_CAP", 1000)
    monkeypatch.setattr(crm_sync.hubspot, "SEARCH_CAP", 1000)
    hubspot_sandbox.search_per_second = None
    hubspot_sandbox.apply_limits()
    app = crm_app(app, hubspot=hubspot_sandbox)
    adapter = make_adapter(app, "hubspot")
    assert isinstance(adapter, HubSpotAdapter)
    adapter.ensure_schema()
    adapter.search_pacer = RollingWindow(1000, 1.0)
    with hubspot_sandbox.lock:
        for n in range(1500):
            hubspot_sandbox.store.create({"loyalty_member_id": f"x-{n}"})
            if n % 100 == 0:
                time.sleep(0.002)
    hubspot_sandbox.recorder.clear()

    seen = {p.key for p in adapter.pull(None, datetime.now(UTC) + timedelta(seconds=1))}

    assert seen == {f"x-{n}" for n in range(1500)}
    searches = hubspot_sandbox.requests(path="/crm/v3/objects/contacts/search")
    assert all(r.status == 200 for r in searches)
    assert sum(1 for r in searches if not r.json().get("after")) >= 2  # restarted


def test_the_pull_cursor_never_passes_the_runs_start(
    app: App, hubspot_sandbox: HubSpotSandbox
) -> None:
    app = crm_app(app, hubspot=hubspot_sandbox)
    make_adapter(app, "hubspot").ensure_schema()
    with hubspot_sandbox.lock:
        hubspot_sandbox.store.create({"loyalty_member_id": "early"})
    time.sleep(0.01)
    _now(app)
    started = app.clock.now()
    time.sleep(0.01)
    with hubspot_sandbox.lock:
        hubspot_sandbox.store.create({"loyalty_member_id": "late"})

    first = run_pull(app, "hubspot")
    _now(app)
    second = run_pull(app, "hubspot")

    assert first.seen == 1 and first.cursor is not None
    assert datetime.fromisoformat(first.cursor) < started
    assert second.seen == 2  # the last seen value is read again, then the late edit


def test_a_salesforce_edit_flows_back_through_paged_soql(
    app: App, salesforce_org: SalesforceSandbox
) -> None:
    app = crm_app(app, salesforce=salesforce_org)
    ids = add_members(app, 300, email_consent=True)
    run_push(app, "salesforce")
    edited = ids[-1]
    (link,) = [link for link in _links(app, "salesforce") if link.member_id == edited]
    with salesforce_org.lock:
        salesforce_org.store.write(
            link.crm_id, {"Phone": "(212) 555-0199", "Loyalty_Email_Consent__c": False}
        )
    # Salesforce stamps are strictly increasing, so a burst of writes runs ahead of the clock.
    _now(app, timedelta(seconds=2))
    salesforce_org.recorder.clear()

    report = run_pull(app, "salesforce")

    member = _member(app, edited)
    assert (member.phone, member.email_consent) == ("+12125550199", False)
    assert report.seen == 300 and report.updated == 1
    assert len(salesforce_org.requests(path="/services/data/v59.0/query/")) == 2


def test_erasure_reaches_both_crms_and_is_not_undone_by_a_push(
    app: App, hubspot_sandbox: HubSpotSandbox, salesforce_org: SalesforceSandbox
) -> None:
    app = crm_app(app, hubspot=hubspot_sandbox, salesforce=salesforce_org)
    make_adapter(app, "hubspot").ensure_schema()
    gone, kept = add_members(app, 2)
    run_push(app, "hubspot")
    run_push(app, "salesforce")
    external = _member(app, gone).external_id

    outcome = erase_member(app, gone)

    assert outcome == {"hubspot": True, "salesforce": True}
    assert hubspot_sandbox.contact_by("loyalty_member_id", external) is None
    assert len(hubspot_sandbox.contacts()) == 1
    (record,) = [r for r in salesforce_org.contacts() if r["Loyalty_Member_Id__c"] == external]
    assert (record["Email"], record["Phone"], record["LastName"]) == (None, None, "[erased]")
    assert record["Loyalty_Points__c"] is None
    hubspot_sandbox.recorder.clear()
    salesforce_org.recorder.clear()
    run_push(app, "hubspot", full=True)
    run_push(app, "salesforce", full=True)
    hub = [i["id"] for r in hubspot_sandbox.requests(path=UPSERT) for i in r.json()["inputs"]]
    assert hub == [_member(app, kept).external_id]
    assert all(
        rec["Loyalty_Member_Id__c"] != external
        for r in salesforce_org.requests(method="PATCH")
        for rec in r.json()["records"]
    )
