"""`loyalty crm push|pull|status` through the click group."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import select

from cli.crm import crm
from crm_sync.adapters import configured_crms, make_adapter
from crm_sync.runs import run_push
from loyalty.app import App
from loyalty.models import Message
from sandbox.hubspot import HubSpotSandbox
from sandbox.salesforce import SalesforceSandbox
from tests.crm.support import add_members, crm_app


def test_push_then_status_shows_runs_pending_changes_and_errors(
    app: App, hubspot_sandbox: HubSpotSandbox
) -> None:
    make_adapter(crm_app(app, hubspot=hubspot_sandbox), "hubspot").ensure_schema()
    add_members(app, 5)
    add_members(app, 1, email="broken", external_id="bad-1")
    env = {
        "DATABASE_URL": app.database.url,
        "HUBSPOT_ACCESS_TOKEN": hubspot_sandbox.access_token,
        "HUBSPOT_BASE_URL": hubspot_sandbox.base_url,
    }
    runner = CliRunner()

    before = runner.invoke(crm, ["status"], env=env)
    pushed = runner.invoke(crm, ["push", "--crm", "hubspot"], env=env)
    add_members(app, 2)
    after = runner.invoke(crm, ["status"], env=env)

    assert before.stdout.splitlines()[:3] == [
        "hubspot: 0 members linked, 6 pending changes",
        "  push: never ran",
        "  pull: never ran",
    ]
    assert pushed.exit_code == 0, pushed.output
    assert pushed.stdout == (
        "hubspot: 6 members sent in 1 call, 5 landed, 1 failed, 0 journey updates\n"
    )
    lines = after.stdout.splitlines()
    assert lines[0] == "hubspot: 6 members linked, 2 pending changes"
    assert lines[1].startswith("  push: last run ")
    assert lines[3].startswith("  member bad-1: VALIDATION_ERROR: INVALID_EMAIL on email (")
    assert "broken" not in after.output


def push_every_crm(app: App) -> int:
    """What the scheduler's crm_push tick makes the workers do: one push per CRM."""
    return sum(run_push(app, crm).landed for crm in configured_crms(app.settings))


def test_status_says_when_sync_is_off(app: App) -> None:
    result = CliRunner().invoke(crm, ["status"], env={"DATABASE_URL": app.database.url})
    assert result.stdout == "CRM sync is off: no CRM credentials are set\n"


def test_the_push_tick_serves_every_crm_and_settles_journey_updates_once_both_answered(
    app: App, hubspot_sandbox: HubSpotSandbox, salesforce_org: SalesforceSandbox
) -> None:
    app = crm_app(app, hubspot=hubspot_sandbox, salesforce=salesforce_org)
    make_adapter(app, "hubspot").ensure_schema()
    (member_id,) = add_members(app, 1)
    now = app.clock.now()
    with app.database.transaction() as session:
        session.add(
            Message(
                idempotency_key="enrollment:1:crm",
                member_id=member_id,
                channel="crm",
                purpose="transactional",
                state="pending",
                decisions={"properties": {"loyalty_last_referral_reward": 50}},
                created_at=now,
                updated_at=now,
            )
        )

    landed = push_every_crm(app)

    assert landed == 2
    (record,) = salesforce_org.contacts()
    assert record["Loyalty_Last_Referral_Reward__c"] == 50.0
    (contact,) = hubspot_sandbox.contacts()
    assert contact["properties"]["loyalty_last_referral_reward"] == "50"
    with app.database.transaction() as session:
        message = session.scalars(select(Message)).one()
    assert message.state == "sent"
    assert message.decisions["crm"] == {"hubspot": "sent", "salesforce": "sent"}
    assert push_every_crm(app) == 0  # nothing changed, nothing pending
