"""Redemptions: points taken once per idempotency key, the rules that refuse one, availability."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from automations import runtime
from automations.runtime import actors
from automations.runtime.broker import build_broker, embedded_worker
from loyalty.app import App
from loyalty.errors import InsufficientPointsError
from loyalty.event_types import EventInput
from loyalty.redemptions import Redeemed, RedemptionError, redeem_member
from loyalty.rewards import RedemptionState
from loyalty.states import LedgerKind
from shops.codes import code_for
from tests.rewards.support import (
    balance,
    emit_all,
    events_of,
    ledger_entries,
    member_with_points,
    order,
    redemptions,
    rewards_app,
)


def redeem(app: App, external_id: str, reward: str, key: str, **kwargs: object) -> Redeemed:
    return redeem_member(
        app.database,
        external_id,
        reward,
        key,
        settings=app.settings,
        now=app.clock.now(),
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_redemption_takes_the_points_once_per_key(app: App, tmp_path: Path) -> None:
    app = rewards_app(app, tmp_path)
    member = member_with_points(app, 250, external_id="m-1")
    first = redeem(app, "m-1", "ten_off", "k-1", currency="EUR")
    again = redeem(app, "m-1", "ten_off", "k-1", currency="EUR")
    assert (first.created, again.created) == (True, False)
    assert again.redemption.id == first.redemption.id
    made = first.redemption
    assert (made.state, made.points, str(made.value), made.currency) == (
        RedemptionState.PENDING,
        100,
        "2.50",
        "EUR",
    )
    assert made.expires_at == app.clock.now() + (made.expires_at - made.created_at)
    assert (made.expires_at - made.created_at).days == 30
    assert balance(app.database, member.id) == 150
    redeems = [e for e in ledger_entries(app.database, member.id) if e.kind == LedgerKind.REDEEM]
    assert [(e.delta, e.reason) for e in redeems] == [(-100, "reward ten_off")]
    # A new key is a new redemption.
    assert redeem(app, "m-1", "ten_off", "k-2", currency="PLN").created
    assert balance(app.database, member.id) == 50


@pytest.mark.parametrize(
    ("points", "tier", "reward", "currency", "error", "message"),
    [
        (99, "bronze", "ten_off", "PLN", InsufficientPointsError, "has 99 redeemable points"),
        (500, "silver", "vip_percent", None, RedemptionError, "needs tier gold or higher"),
        (500, "bronze", "nope", None, RedemptionError, "no reward 'nope'; rewards: ten_off"),
        (500, "bronze", "ten_off", None, RedemptionError, "has a value in PLN, EUR; name"),
        (500, "bronze", "ten_off", "USD", RedemptionError, "has no value in USD"),
    ],
)
def test_a_redemption_the_rules_refuse_takes_nothing(
    app: App,
    tmp_path: Path,
    points: int,
    tier: str,
    reward: str,
    currency: str | None,
    error: type[Exception],
    message: str,
) -> None:
    app = rewards_app(app, tmp_path)
    member = member_with_points(app, points, external_id="m-1")
    if tier != "bronze":
        with app.database.transaction() as session:
            from loyalty.models import Member

            row = session.get(Member, member.id)
            assert row is not None
            row.tier = tier
    with pytest.raises(error, match=message):
        redeem(app, "m-1", reward, "k-1", currency=currency)
    assert redemptions(app.database) == []
    assert balance(app.database, member.id) == points


def test_the_limit_per_member_counts_redemptions_that_were_not_refused(
    app: App, tmp_path: Path
) -> None:
    app = rewards_app(app, tmp_path)
    member_with_points(app, 500, external_id="m-1")
    redeem(app, "m-1", "free_ship", "a")
    redeem(app, "m-1", "free_ship", "b")
    with pytest.raises(RedemptionError, match="can be taken 2 time"):
        redeem(app, "m-1", "free_ship", "c")
    # The same key as before is still the earlier redemption, not a third.
    assert not redeem(app, "m-1", "free_ship", "a").created


def test_a_key_used_for_another_reward_is_refused(app: App, tmp_path: Path) -> None:
    app = rewards_app(app, tmp_path)
    member_with_points(app, 500, external_id="m-1")
    redeem(app, "m-1", "free_ship", "a")
    with pytest.raises(RedemptionError, match="already redeemed 'free_ship'"):
        redeem(app, "m-1", "ten_off", "a", currency="PLN")


def test_fifty_concurrent_requests_with_one_key_redeem_once(app: App, tmp_path: Path) -> None:
    app = rewards_app(app, tmp_path)
    member = member_with_points(app, 1000, external_id="m-1")
    results: list[Redeemed] = []
    failures: list[BaseException] = []
    start = threading.Barrier(50)

    def request() -> None:
        start.wait()
        try:
            results.append(redeem(app, "m-1", "ten_off", "same-key", currency="PLN"))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=request) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sum(r.created for r in results) == 1
    assert {r.redemption.id for r in results} == {redemptions(app.database)[0].id}
    redeems = [e for e in ledger_entries(app.database, member.id) if e.kind == LedgerKind.REDEEM]
    assert len(redeems) == 1
    assert balance(app.database, member.id) == 900


def test_with_no_shop_the_code_is_issued_locally_and_reward_redeemed_carries_it(
    app: App, tmp_path: Path
) -> None:
    app = rewards_app(app, tmp_path, reward_code_secret="s3cret")
    member = member_with_points(app, 300, external_id="m-1")
    made = redeem(app, "m-1", "ten_off", "k-1", currency="PLN").redemption
    runtime.configure(app)
    with embedded_worker(build_broker(app.settings), threads=2):
        actors.send("create_reward_code", made.id)
        actors.send("create_reward_code", made.id)  # a second run changes nothing
    (issued,) = redemptions(app.database)
    assert issued.state == RedemptionState.ISSUED
    assert issued.code == code_for(made.id, "s3cret")
    assert issued.code.startswith("LJ-") and len(issued.code) == 15 and issued.code.isupper()
    assert issued.shop == "local"
    (event,) = events_of(app.database, "reward.redeemed")
    assert event.processed_at is not None and event.error is None
    assert event.payload["code"] == issued.code
    assert event.payload["value"] == "10.00" and event.payload["currency"] == "PLN"
    assert event.payload["expires_at"] == issued.expires_at.isoformat()
    # The event's effect takes no points a second time.
    assert balance(app.database, member.id) == 200
    assert len(ledger_entries(app.database, member.id)) == 2


def test_a_shop_redeem_event_still_takes_points(app: App, tmp_path: Path) -> None:
    app = rewards_app(app, tmp_path)
    member = member_with_points(app, 300, external_id="m-1")
    emit_all(app, EventInput("reward.redeemed", "m-1", id="r-1", data={"points": 40}))
    # A shop cannot pass its event off as a catalog redemption.
    emit_all(
        app,
        EventInput("reward.redeemed", "m-1", id="r-2", data={"points": 10, "redemption_id": 1}),
    )
    assert balance(app.database, member.id) == 250


def test_reward_available_fires_once_per_rise_to_the_cost(app: App, tmp_path: Path) -> None:
    app = rewards_app(app, tmp_path)
    member_with_points(app, 0, external_id="m-1", locale="pl")
    emit_all(app, order("m-1", "1", "40"))  # 40: free_ship (30) reached
    emit_all(app, order("m-1", "2", "20"))  # 60: nothing new
    available = events_of(app.database, "reward.available")
    assert [e.payload["reward"] for e in available] == ["free_ship"]
    emit_all(app, order("m-1", "3", "50"))  # 110: ten_off reached
    assert [e.payload["reward"] for e in events_of(app.database, "reward.available")] == [
        "free_ship",
        "ten_off",
    ]
    ten_off = events_of(app.database, "reward.available")[1]
    assert ten_off.payload == {
        "reward": "ten_off",
        "reward_name": "10 zł rabatu",
        "cost": 100,
        "points": 110,
    }
    # Spending drops the balance below both; rising again announces them again.
    redeem(app, "m-1", "ten_off", "k-1", currency="PLN")  # 10 left
    emit_all(app, order("m-1", "4", "100"))  # 110
    rewards = [e.payload["reward"] for e in events_of(app.database, "reward.available")]
    assert rewards[:2] == ["free_ship", "ten_off"]
    assert sorted(rewards[2:]) == ["free_ship", "ten_off"]
    # vip_percent (gold only) is never announced to a bronze member.
    assert "vip_percent" not in rewards
