"""The referral program end to end: link, friend code, first order, fraud checks, hold, payout."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from cli import main
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.erasure import erase_member
from loyalty.member_upsert import upsert_member
from loyalty.models import Member, ReferralClick
from loyalty.referral_review import approve
from sandbox.shopify_payloads import address
from tests.referrals.support import (
    REFERRAL_POINTS,
    SHOP_URL,
    Shop,
    balance,
    payouts,
    referral_events,
    referral_of,
)

PAST_HOLD = timedelta(days=14, hours=1)


def test_a_clean_referral_rewards_the_friend_at_once_and_the_referrer_after_the_hold(
    shop: Shop, clock: FrozenClock
) -> None:
    # Given a customer who has ordered, and a friend who follows her referral link
    anna = shop.customer(1001, email="anna@example.com")
    shop.order(anna, ip="203.0.113.10")
    referrer = shop.member(1001)
    code = shop.friend_code(referrer)

    # Then the friend's discount exists at the shop: any customer, once each, no end
    [made] = [c for c in shop.sandbox.codes() if c["code"] == code]
    assert made["usage_limit"] is None and made["applies_once_per_customer"] is True

    # When the friend's first order uses that code
    bob = shop.customer(2002, email="bob@example.org")
    shop.order(bob, codes=[code.lower()], ip="198.51.100.7")
    friend = shop.member(2002)

    # Then the referral is matched by the code and held: nothing is paid yet
    referral = referral_of(shop.app, friend)
    assert (referral.referrer_id, referral.status, referral.reasons) == (referrer.id, "held", None)
    assert referral.hold_until == clock.now() + timedelta(days=14)
    assert friend.referred_by_id == referrer.id
    assert payouts(shop.app) == 0
    clock.advance(timedelta(days=13))
    assert payouts(shop.app) == 0
    assert balance(shop.app, referrer) == 100

    # When the return window is over, the scheduler pays the referrer once
    clock.advance(timedelta(days=2))
    assert payouts(shop.app) == 1
    assert payouts(shop.app) == 0
    assert balance(shop.app, referrer) == 100 + REFERRAL_POINTS
    assert referral_of(shop.app, friend).status == "completed"
    assert referral_events(shop.app) == 1
    # The friend's own first order earned its points; the referral gives them nothing more
    assert balance(shop.app, friend) == 100


def test_referred_by_code_is_matched_without_the_link(shop: Shop, clock: FrozenClock) -> None:
    anna = shop.customer(1001)
    shop.order(anna)
    referrer = shop.member(1001)
    friend = shop.sign_up(shop.customer(2002))
    with shop.app.database.transaction() as session:
        upsert_member(
            session,
            friend.external_id,
            {"referred_by_code": referrer.referral_code},
            source="test",
            now=clock.now(),
            settings=shop.app.settings,
        )
    shop.order(shop.customer(2002))
    assert referral_of(shop.app, friend).status == "held"
    clock.advance(PAST_HOLD)
    assert payouts(shop.app) == 1
    assert balance(shop.app, referrer) == 100 + REFERRAL_POINTS


# Each case: how the friend's order resembles the referrer's, and the reason it is held for.
FRAUD: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "same_email": ({"email": "Anna.Nowak+friends@googlemail.com"}, {}),
    "same_phone": ({"phone": "+48600100200"}, {}),
    "same_address": ({}, {"ship_to": address(first_name="Bob", address1="ul. Długa 5")}),
    "same_ip": ({}, {"ip": "203.0.113.10"}),
}


@pytest.mark.parametrize("reason", sorted(FRAUD))
def test_a_suspicious_referral_waits_for_review_and_is_paid_only_after_approval(
    shop: Shop, clock: FrozenClock, reason: str
) -> None:
    # Given a referrer with an order, and a friend whose order resembles hers
    anna = shop.customer(1001, email="annanowak@gmail.com", phone="+48600100200")
    shop.order(anna, ip="203.0.113.10", ship_to=address(address1="UL. DŁUGA 5 "))
    referrer = shop.member(1001)
    code = shop.friend_code(referrer)
    profile, order = FRAUD[reason]
    friend_customer = shop.customer(2002, **{"email": "bob@example.org", **profile})
    shop.order(friend_customer, codes=[code], **order)
    friend = shop.member(2002)

    # Then it is held for review with its reason, and the hold alone does not pay it
    referral = referral_of(shop.app, friend)
    assert (referral.status, referral.reasons) == ("review", reason)
    clock.advance(PAST_HOLD)
    assert payouts(shop.app) == 0
    assert balance(shop.app, referrer) == 100

    # When a reviewer approves it, the next tick pays it, once
    approve(shop.app.database, referral.id, now=clock.now())
    assert payouts(shop.app) == 1
    assert payouts(shop.app) == 0
    assert balance(shop.app, referrer) == 100 + REFERRAL_POINTS


def test_a_member_using_their_own_friend_code_is_a_self_referral(
    shop: Shop, clock: FrozenClock
) -> None:
    anna = shop.customer(1001)
    referrer = shop.sign_up(anna)
    code = shop.friend_code(referrer)
    shop.order(anna, codes=[code])
    referral = referral_of(shop.app, referrer)
    assert referral.status == "review"
    assert referral.reasons is not None and referral.reasons.startswith("self_referral")
    assert shop.member(1001).referred_by_id is None
    clock.advance(PAST_HOLD)
    assert payouts(shop.app) == 0


@pytest.mark.parametrize(
    ("limits", "gap", "reason"),
    [
        ({"referral_max_per_day": 1}, timedelta(hours=3), "velocity_day"),
        (
            {"referral_max_per_day": 5, "referral_max_per_week": 1},
            timedelta(days=3),
            "velocity_week",
        ),
    ],
)
def test_too_many_referrals_in_a_day_or_week_are_held_for_review(
    shop: Shop, clock: FrozenClock, limits: dict[str, int], gap: timedelta, reason: str
) -> None:
    shop.app.settings = shop.app.settings.model_copy(update=limits)
    anna = shop.customer(1001)
    shop.order(anna)
    code = shop.friend_code(shop.member(1001))
    shop.order(shop.customer(2001), codes=[code])
    clock.advance(gap)
    shop.order(shop.customer(2002), codes=[code])
    first, second = (
        referral_of(shop.app, shop.member(2001)),
        referral_of(shop.app, shop.member(2002)),
    )
    assert (first.status, first.reasons) == ("held", None)
    assert (second.status, second.reasons) == ("review", reason)


def test_a_refunded_first_order_pays_nothing(shop: Shop, clock: FrozenClock) -> None:
    anna = shop.customer(1001)
    shop.order(anna)
    referrer = shop.member(1001)
    code = shop.friend_code(referrer)
    bob = shop.customer(2002)
    order_id = shop.order(bob, codes=[code])

    # When the friend returns everything within the window
    clock.advance(timedelta(days=5))
    shop.refund(order_id, "100.00")

    # Then the referral is void and the referrer is never paid
    referral = referral_of(shop.app, shop.member(2002))
    assert referral.status == "rejected"
    assert referral.review_note == f"order {order_id} refunded: nothing paid"
    clock.advance(PAST_HOLD)
    assert payouts(shop.app) == 0
    assert balance(shop.app, referrer) == 100
    assert referral_events(shop.app) == 0


def test_a_partial_refund_keeps_the_referral(shop: Shop, clock: FrozenClock) -> None:
    shop.order(shop.customer(1001))
    code = shop.friend_code(shop.member(1001))
    order_id = shop.order(shop.customer(2002), codes=[code])
    shop.refund(order_id, "30.00")
    assert referral_of(shop.app, shop.member(2002)).status == "held"
    clock.advance(PAST_HOLD)
    assert payouts(shop.app) == 1


def test_the_review_commands_list_approve_and_reject(
    shop: Shop, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    anna = shop.customer(1001, email="anna@example.com")
    shop.order(anna, ip="203.0.113.10")
    code = shop.friend_code(shop.member(1001))
    shop.order(shop.customer(2001, email="ANNA@example.com"), codes=[code])
    shop.order(shop.customer(2002), codes=[code], ip="203.0.113.10")
    shop.order(shop.customer(2003), codes=[code])
    suspicious = referral_of(shop.app, shop.member(2001))
    other = referral_of(shop.app, shop.member(2002))
    settings = shop.app.settings
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    runner = CliRunner()

    listed = runner.invoke(main, ["referrals", "review"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert len(lines) == 3
    assert "review" in lines[0] and "reasons same_email" in lines[0]
    assert "reasons same_ip" in lines[1]
    assert "held" in lines[2] and "reasons -" in lines[2]

    rejected = runner.invoke(main, ["referrals", "reject", str(other.id), "--reason", "household"])
    assert rejected.exit_code == 0, rejected.output
    approved = runner.invoke(main, ["referrals", "approve", str(suspicious.id)])
    assert approved.exit_code == 0, approved.output
    again = runner.invoke(main, ["referrals", "approve", str(other.id)])
    assert again.exit_code == 1
    assert f"referral {other.id} is rejected, not review" in again.output
    assert referral_of(shop.app, shop.member(2002)).review_note == "rejected: household"

    clock.advance(PAST_HOLD)
    assert payouts(shop.app) == 2  # the approved one and the clean one
    assert balance(shop.app, shop.member(1001)) == 100 + 2 * REFERRAL_POINTS


def test_the_link_records_the_visit_and_redirects_with_the_same_code_every_time(
    shop: Shop, referral_app: App
) -> None:
    referrer = shop.sign_up(shop.customer(1001))
    first = shop.visit(referrer.referral_code.lower())
    second = shop.client.get(
        f"/r/{referrer.referral_code}",
        headers={"User-Agent": "Mozilla/5.0 (friend)"},
        follow_redirects=False,
    )
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    location = first.headers["location"]
    assert (
        location.startswith(f"{SHOP_URL}/discount/LJ-F") and len(location.rsplit("/", 1)[1]) == 16
    )
    assert first.headers["cache-control"] == "no-store"
    assert len(shop.sandbox.codes()) == 1  # made at the shop once
    with referral_app.database.sessions() as session:
        clicks = list(session.scalars(select(ReferralClick).order_by(ReferralClick.id)))
    assert [(c.referrer_id, c.code) for c in clicks] == [(referrer.id, referrer.referral_code)] * 2
    assert clicks[1].user_agent_hash is not None and len(clicks[1].user_agent_hash) == 64
    assert "friend" not in str(clicks[1].user_agent_hash)
    assert clicks[0].ip_hash is not None and clicks[0].ip_hash != "testclient"


def test_head_records_nothing_and_unknown_or_erased_codes_get_a_neutral_page(
    shop: Shop, referral_app: App
) -> None:
    referrer = shop.sign_up(shop.customer(1001))
    head = shop.client.head(f"/r/{referrer.referral_code}", follow_redirects=False)
    assert head.status_code == 303 and head.headers["location"] == f"{SHOP_URL}/"
    unknown = shop.visit("NOSUCHCODE")
    assert unknown.status_code == 404 and "Link not found" in unknown.text
    with referral_app.database.transaction() as session:
        erase_member(session, session.get_one(Member, referrer.id), now=referral_app.clock.now())
    erased = shop.visit(referrer.referral_code)
    assert erased.status_code == 404 and erased.text == unknown.text
    with referral_app.database.sessions() as session:
        assert session.scalars(select(ReferralClick)).all() == []
    assert shop.sandbox.codes() == []
