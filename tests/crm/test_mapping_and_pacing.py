"""The mapping refuses unknown names with file:line; pacing is shared through Redis."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from automations.runtime.pacing import RedisWindow
from cli.crm import crm
from crm_sync.delta import canonical
from crm_sync.errors import MappingError
from crm_sync.mapping import DEFAULT_MAPPING_FILE, load_mapping
from crm_sync.values import member_values
from loyalty import ledger
from loyalty.app import App
from loyalty.members import member_data
from loyalty.models import Member, Referral
from loyalty.pacing import RollingWindow
from tests.crm.support import add_members

SHARED = (
    "points_balance",
    "lifetime_points",
    "tier",
    "referral_code",
    "referral_link",
    "referrals_completed",
    "points_expiring",
    "points_expiring_at",
    "email_consent",
    "birthday",
)


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    text = DEFAULT_MAPPING_FILE.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "crm_mapping.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def _line_of(path: Path, needle: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(n for n, line in enumerate(lines, 1) if needle in line) - 1


def test_the_shipped_mapping_loads() -> None:
    mapping = load_mapping()
    assert mapping.key.hubspot == "loyalty_member_id"
    assert mapping.key.salesforce == "Loyalty_Member_Id__c"
    assert {f.field for f in mapping.pulled("hubspot")} == {
        "email",
        "phone",
        "first_name",
        "last_name",
        "birthday",
        "email_consent",
        "sms_consent",
    }


def test_an_unknown_member_field_is_refused_with_the_file_line(tmp_path: Path) -> None:
    path = _broken(tmp_path, "field: lifetime_points", "field: lifetime_pointz")
    with pytest.raises(MappingError) as caught:
        load_mapping(path)
    line = _line_of(path, "lifetime_pointz") + 1
    assert str(caught.value).startswith(f"{path}:{line}: unknown member field 'lifetime_pointz'")


def test_an_unknown_crm_property_is_refused_with_the_file_line(tmp_path: Path) -> None:
    path = _broken(tmp_path, "salesforce: Loyalty_Tier__c", "salesforce: LoyaltyTier")
    with pytest.raises(MappingError) as caught:
        load_mapping(path)
    line = _line_of(path, "LoyaltyTier") - 3
    assert str(caught.value).startswith(f"{path}:{line}: unknown Salesforce field 'LoyaltyTier'")


def test_a_bad_mapping_stops_the_command_in_one_line(app: App, tmp_path: Path) -> None:
    path = _broken(tmp_path, "hubspot: loyalty_tier", "hubspot: tier_of_member")
    env = {
        "DATABASE_URL": app.database.url,
        "HUBSPOT_ACCESS_TOKEN": "pat-x",
        "CRM_MAPPING_FILE": str(path),
    }
    result = CliRunner().invoke(crm, ["push", "--crm", "hubspot"], env=env)
    assert result.exit_code == 2
    assert "unknown HubSpot property 'tier_of_member'" in result.output
    assert result.output.startswith(f"error: {path}:")


def test_bulk_values_match_member_data(app: App) -> None:
    referrer, referee = add_members(app, 2, email_consent=True)
    now = app.clock.now()
    with app.database.transaction() as session:
        member = session.get(Member, referrer)
        assert member is not None
        for days, points in ((30, 40), (30, 60), (90, 5)):
            ledger.apply(
                session,
                member,
                "earn",
                points,
                key=f"k-{days}-{points}",
                reason="test",
                now=now,
                thresholds=app.settings.tier_thresholds,
                expires_at=now + timedelta(days=days),
            )
        session.add(
            Referral(
                referrer_id=referrer,
                referee_id=referee,
                code=member.referral_code,
                status="completed",
                created_at=now,
                completed_at=now,
            )
        )
    with app.database.transaction() as session:
        members = list(session.scalars(select(Member).order_by(Member.id)))
        bulk = member_values(session, members, now=now, public_base_url="https://x.test")
        for member in members:
            one = member_data(
                session, member, now=now, public_base_url="https://x.test", default_zone="UTC"
            )
            assert {k: bulk[member.id][k] for k in SHARED} == {k: one[k] for k in SHARED}
    assert bulk[referrer]["points_expiring"] == 100
    assert bulk[referrer]["referrals_completed"] == 1


def test_canonical_texts_are_stable_across_wire_formats() -> None:
    assert canonical("number", 12.0) == canonical("number", "12") == "12"
    assert canonical("bool", True) == canonical("bool", "true") == "true"
    assert (
        canonical("datetime", "2026-03-10T12:00:00.000+0000")
        == canonical("datetime", "1773144000000")
        == "2026-03-10T12:00:00.000Z"
    )


def test_the_in_process_window_holds_calls_past_the_limit() -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    window = RollingWindow(3, 10.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        token = window.acquire()
        now[0] += 1.0  # each call takes a second; it counts from when it ended
        window.release(token)
    window.acquire()
    assert waits == [pytest.approx(1.0 + 10.05 - 3.0)]


def test_calls_in_flight_hold_their_slot_until_they_end() -> None:
    now = [0.0]
    window = RollingWindow(1, 10.0, clock=lambda: now[0], sleep=lambda s: None)
    token = window.acquire()
    assert window._try("next") > 0
    window.release(token)
    now[0] += 10.1
    assert window._try("next") == 0


def test_workers_share_one_window_through_redis(redis_url: str) -> None:
    class Stop(Exception):
        pass

    def refuse(_: float) -> None:
        raise Stop

    first = RedisWindow(redis_url, "test", 3, 10.0, sleep=refuse)
    second = RedisWindow(redis_url, "test", 3, 10.0, sleep=refuse)
    threads = [threading.Thread(target=w.acquire) for w in (first, second, first)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with pytest.raises(Stop):
        second.acquire()
    other = RedisWindow(redis_url, "other-account", 3, 10.0, sleep=refuse)
    other.acquire()  # another name is another window


def test_a_429_pause_holds_every_worker(redis_url: str) -> None:
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) > 1:
            raise TimeoutError

    first = RedisWindow(redis_url, "paused", 100, 10.0, sleep=sleep)
    second = RedisWindow(redis_url, "paused", 100, 10.0, sleep=sleep)
    first.pause(5.0)
    with pytest.raises(TimeoutError):
        second.acquire()
    assert 4.0 < slept[0] <= 5.0
