"""HubSpot: setup, delta pushes in batches of 100, 207s, 429 storms and resumed runs."""

from __future__ import annotations

from datetime import timedelta

from click.testing import CliRunner
from sqlalchemy import func, select

from cli.crm import crm
from crm_sync.runs import run_push
from loyalty.app import App
from loyalty.models import CrmLink, Member, Message
from sandbox.hubspot import HubSpotSandbox
from tests.crm.support import add_members, set_points
from tests.crm.support import hubspot_app as _ready

UPSERT = "/crm/v3/objects/contacts/batch/upsert"


def test_setup_twice_is_harmless(app: App, hubspot_sandbox: HubSpotSandbox) -> None:
    env = {
        "DATABASE_URL": app.database.url,
        "HUBSPOT_ACCESS_TOKEN": hubspot_sandbox.access_token,
        "HUBSPOT_BASE_URL": hubspot_sandbox.base_url,
    }
    first = CliRunner().invoke(crm, ["setup", "--crm", "hubspot"], env=env)
    created = hubspot_sandbox.requests(path="/crm/v3/properties/contacts", method="POST")
    second = CliRunner().invoke(crm, ["setup", "--crm", "hubspot"], env=env)

    assert first.exit_code == 0, first.output
    assert "created group loyalty" in first.output
    assert "created property loyalty_member_id" in first.output
    assert second.exit_code == 0, second.output
    assert second.output == "hubspot: nothing to create\n"
    after = hubspot_sandbox.requests(path="/crm/v3/properties/contacts", method="POST")
    assert len(after) == len(created)
    key = hubspot_sandbox.store.properties["loyalty_member_id"]
    assert key["hasUniqueValue"] is True and key["groupName"] == "loyalty"


def test_a_thousand_changed_members_take_ten_calls_and_unchanged_ones_none(
    app: App, hubspot_sandbox: HubSpotSandbox
) -> None:
    app = _ready(app, hubspot_sandbox)
    ids = add_members(app, 1000)

    report = run_push(app, "hubspot")

    calls = hubspot_sandbox.requests()
    assert len(calls) == 10
    assert {c.path for c in calls} == {UPSERT}
    assert all(len(c.json()["inputs"]) == 100 for c in calls)
    assert (report.sent, report.landed, report.failed) == (1000, 1000, 0)
    assert len(hubspot_sandbox.contacts()) == 1000

    hubspot_sandbox.recorder.clear()
    again = run_push(app, "hubspot")
    assert hubspot_sandbox.requests() == []
    assert again.sent == 0

    set_points(app, ids[:150], 4321)
    run_push(app, "hubspot")
    calls = hubspot_sandbox.requests()
    assert sorted(len(c.json()["inputs"]) for c in calls) == [50, 100]
    contact = hubspot_sandbox.contact_by("loyalty_member_id", "c-" + str(_external(app, ids[0])))
    assert contact is not None and contact["properties"]["loyalty_points_balance"] == "4321"


def _external(app: App, member_id: int) -> str:
    with app.database.transaction() as session:
        member = session.get(Member, member_id)
        assert member is not None
        return member.external_id.removeprefix("c-")


def test_207_failures_are_recorded_on_the_right_members(
    app: App, hubspot_sandbox: HubSpotSandbox
) -> None:
    app = _ready(app, hubspot_sandbox)
    good = add_members(app, 60)
    bad = add_members(app, 3, email="not-an-email")

    report = run_push(app, "hubspot")

    assert (report.landed, report.failed) == (60, 3)
    with app.database.transaction() as session:
        links = {link.member_id: link for link in session.scalars(select(CrmLink))}
    assert all(links[i].error is None and links[i].crm_id for i in good)
    for member_id in bad:
        assert links[member_id].error == "VALIDATION_ERROR: INVALID_EMAIL on email"
        assert links[member_id].pushed_hash is None
    # Refused values are not sent again until they change.
    hubspot_sandbox.recorder.clear()
    run_push(app, "hubspot")
    assert hubspot_sandbox.requests() == []


def test_a_429_storm_is_survived_with_nothing_lost(
    app: App, hubspot_sandbox: HubSpotSandbox
) -> None:
    app = _ready(app, hubspot_sandbox)
    add_members(app, 800)
    hubspot_sandbox.set_faults(rate_limit=3, rate_window_s=1.0)

    report = run_push(app, "hubspot")

    refused = [r for r in hubspot_sandbox.requests(path=UPSERT) if r.status == 429]
    assert refused, "the storm should have answered some calls with 429"
    assert (report.landed, report.failed) == (800, 0)
    assert len(hubspot_sandbox.contacts()) == 800
    assert len(hubspot_sandbox.requests(path=UPSERT, status=200)) == 8


def test_a_run_that_dies_midway_resumes_without_resending_what_landed(
    app: App, hubspot_sandbox: HubSpotSandbox
) -> None:
    app = _ready(app, hubspot_sandbox, crm_push_concurrency=1)
    add_members(app, 1000)
    hubspot_sandbox.daily_limit = hubspot_sandbox._daily_used + 3

    first = run_push(app, "hubspot")

    assert first.landed == 300
    assert first.stopped is not None and "daily" in first.stopped
    hubspot_sandbox.daily_limit = 1_000_000
    hubspot_sandbox.recorder.clear()
    second = run_push(app, "hubspot")
    assert second.landed == 700
    assert len(hubspot_sandbox.requests(path=UPSERT)) == 7
    assert len(hubspot_sandbox.contacts()) == 1000


def test_journey_updates_ride_along_and_are_marked_sent(
    app: App, hubspot_sandbox: HubSpotSandbox
) -> None:
    app = _ready(app, hubspot_sandbox)
    (member_id,) = add_members(app, 1)
    run_push(app, "hubspot")
    now = app.clock.now()
    with app.database.transaction() as session:
        for key, properties in (
            ("e1:reward", {"loyalty_last_referral_reward": "50"}),
            ("e1:odd", {"no_such_property": "x"}),
        ):
            session.add(
                Message(
                    idempotency_key=key,
                    member_id=member_id,
                    channel="crm",
                    purpose="transactional",
                    state="pending",
                    decisions={"properties": properties},
                    created_at=now,
                    updated_at=now + timedelta(seconds=1),
                )
            )
    hubspot_sandbox.recorder.clear()

    run_push(app, "hubspot")

    (call,) = hubspot_sandbox.requests(path=UPSERT)
    sent = call.json()["inputs"][0]["properties"]
    assert sent["loyalty_last_referral_reward"] == "50"
    assert "no_such_property" not in sent
    with app.database.transaction() as session:
        states = dict(session.execute(select(Message.idempotency_key, Message.state)).all())
        odd = session.scalar(select(Message.error).where(Message.idempotency_key == "e1:odd"))
        linked = session.scalar(select(func.count()).select_from(CrmLink))
    assert states == {"e1:reward": "sent", "e1:odd": "failed"}
    assert odd == "hubspot: unknown CRM property no_such_property"
    assert linked == 1


def test_pushes_are_paced_through_redis_when_it_is_configured(
    app: App, hubspot_sandbox: HubSpotSandbox, redis_url: str
) -> None:
    import redis

    app = _ready(app, hubspot_sandbox, redis_url=redis_url)
    add_members(app, 200)

    report = run_push(app, "hubspot")

    assert report.landed == 200
    calls = redis.Redis.from_url(redis_url).zcard("loyalty:crm-pace:hubspot")
    assert calls >= 2  # the setup's calls and the two pushes share one window


def test_a_429_retry_after_header_is_honoured() -> None:
    from hubspot.crm.contacts import ApiException

    from crm_sync.hubspot import judge

    error = ApiException(status=429, reason="Too Many Requests")
    error.headers = {"Retry-After": "7"}
    error.body = '{"status":"error","policyName":"TEN_SECONDLY_ROLLING"}'

    verdict = judge(error)

    assert (verdict.retry, verdict.after_s, verdict.rate_limited) == (True, 7.0, True)
