"""Salesforce: check lists missing fields, Collections and Bulk 2.0 upserts, the API budget."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from cli.crm import crm
from crm_sync.runs import run_push
from loyalty.app import App
from loyalty.models import CrmLink, SyncCursor
from sandbox.salesforce import SalesforceSandbox
from tests.crm.support import add_members, crm_app, set_points

COLLECTIONS = "/services/data/v59.0/composite/sobjects/Contact/Loyalty_Member_Id__c"
JOBS = "/services/data/v59.0/jobs/ingest"


def test_check_lists_the_fields_an_admin_must_create(
    app: App, salesforce_sandbox: SalesforceSandbox
) -> None:
    env = {
        "DATABASE_URL": app.database.url,
        "SALESFORCE_INSTANCE_URL": salesforce_sandbox.base_url,
        "SALESFORCE_ACCESS_TOKEN": salesforce_sandbox.access_token,
        "SALESFORCE_CA_BUNDLE": str(salesforce_sandbox.ca_file),
    }

    result = CliRunner().invoke(crm, ["check", "--crm", "salesforce"], env=env)

    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert "create Contact field Loyalty_Lifetime_Points__c (Number(18, 0))" in lines
    assert "create Contact field Loyalty_Points_Expiring_At__c (Date/Time)" in lines
    assert "create Contact field Loyalty_Sms_Consent__c (Checkbox)" in lines
    assert "create Contact field Loyalty_Referral_Code__c (Text(255))" in lines
    assert not any("Loyalty_Member_Id__c" in line for line in lines)  # the sandbox has it


def test_check_passes_when_every_field_exists(app: App, salesforce_org: SalesforceSandbox) -> None:
    env = {
        "DATABASE_URL": app.database.url,
        "SALESFORCE_INSTANCE_URL": salesforce_org.base_url,
        "SALESFORCE_ACCESS_TOKEN": salesforce_org.access_token,
        "SALESFORCE_CA_BUNDLE": str(salesforce_org.ca_file),
    }
    result = CliRunner().invoke(crm, ["check", "--crm", "salesforce"], env=env)
    assert (result.exit_code, result.output) == (0, "salesforce: every mapped field exists\n")


def test_a_thousand_changed_members_take_five_calls_and_unchanged_ones_none(
    app: App, salesforce_org: SalesforceSandbox
) -> None:
    app = crm_app(app, salesforce=salesforce_org)
    ids = add_members(app, 1000)

    report = run_push(app, "salesforce")

    calls = salesforce_org.requests()
    assert len(calls) == 5
    assert {c.path for c in calls} == {COLLECTIONS}
    assert all(len(c.json()["records"]) == 200 for c in calls)
    assert (report.landed, report.failed) == (1000, 0)
    assert len(salesforce_org.contacts()) == 1000

    salesforce_org.recorder.clear()
    run_push(app, "salesforce")
    assert salesforce_org.requests() == []

    set_points(app, ids[:10], 77)
    run_push(app, "salesforce")
    (call,) = salesforce_org.requests()
    assert len(call.json()["records"]) == 10
    assert call.json()["records"][0]["Loyalty_Points__c"] == 77


def test_per_record_errors_are_recorded_on_the_right_members(
    app: App, salesforce_org: SalesforceSandbox
) -> None:
    app = crm_app(app, salesforce=salesforce_org)
    good = add_members(app, 20)
    nameless = add_members(app, 2, last_name=None)
    bad_email = add_members(app, 1, email="nope")

    report = run_push(app, "salesforce")

    assert (report.landed, report.failed) == (20, 3)
    with app.database.transaction() as session:
        links = {link.member_id: link for link in session.scalars(select(CrmLink))}
    assert all(links[i].error is None and links[i].crm_id for i in good)
    assert [links[i].error for i in nameless] == ["REQUIRED_FIELD_MISSING on LastName"] * 2
    assert links[bad_email[0]].error == "INVALID_EMAIL_ADDRESS on Email"


def test_above_the_threshold_bulk_2_reports_failed_rows(
    app: App, salesforce_org: SalesforceSandbox
) -> None:
    app = crm_app(app, salesforce=salesforce_org, salesforce_bulk_threshold=100)
    good = add_members(app, 300)
    bad = add_members(app, 2, last_name=None)

    report = run_push(app, "salesforce")

    assert salesforce_org.requests(path=COLLECTIONS) == []
    assert len(salesforce_org.requests(path=JOBS, method="POST")) == 1
    assert (report.landed, report.failed) == (300, 2)
    assert len(salesforce_org.contacts()) == 300
    with app.database.transaction() as session:
        links = {link.member_id: link for link in session.scalars(select(CrmLink))}
    assert all(links[i].crm_id and links[i].error is None for i in good)
    assert [links[i].error for i in bad] == ["REQUIRED_FIELD_MISSING on LastName"] * 2


def test_pushing_stops_at_the_budget_share_and_says_so(
    app: App, salesforce_org: SalesforceSandbox
) -> None:
    app = crm_app(app, salesforce=salesforce_org, crm_push_concurrency=1)
    salesforce_org.daily_api_limit = 5
    add_members(app, 1000)

    report = run_push(app, "salesforce")

    assert report.landed == 800
    assert report.stopped == (
        "Salesforce API budget: 4 of 5 daily requests used, the sync stops at 80%"
    )
    with app.database.transaction() as session:
        cursor = session.get(SyncCursor, ("salesforce", "push"))
    assert cursor is not None and cursor.last_error == report.stopped


def test_5xx_answers_are_retried_with_backoff_and_nothing_is_lost(
    app: App, salesforce_org: SalesforceSandbox
) -> None:
    app = crm_app(app, salesforce=salesforce_org)
    add_members(app, 600)
    salesforce_org.set_faults(error_rate=0.4, seed=3)

    report = run_push(app, "salesforce")

    failed = [r for r in salesforce_org.requests(path=COLLECTIONS) if r.fault]
    assert failed, "the faults should have answered some calls with 5xx"
    assert (report.landed, report.failed) == (600, 0)
    assert len(salesforce_org.contacts()) == 600


def test_without_a_token_or_jwt_settings_salesforce_says_what_to_set() -> None:
    from crm_sync.errors import CrmNotConfigured
    from crm_sync.salesforce import connect

    with pytest.raises(CrmNotConfigured) as caught:
        connect(version="59.0", username="sync@example.com")
    assert "SALESFORCE_CONSUMER_KEY and SALESFORCE_PRIVATE_KEY_FILE" in str(caught.value)
