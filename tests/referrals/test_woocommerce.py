"""The referral program on a WooCommerce shop: the friend's coupon, the first order by the
coupon's code, the hold, the payout, and a refunded first order that pays nothing."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.models import Member
from sandbox.woocommerce import WooCommerceSandbox
from sandbox.woocommerce_payloads import billing_address, customer_payload, order_payload
from tests.conftest import make_settings
from tests.engine.helpers import published
from tests.referrals.support import (
    CATALOG,
    JOURNEY,
    REFERRAL_POINTS,
    balance,
    payouts,
    referral_events,
    referral_of,
)
from tests.shops.support import WOOCOMMERCE_SECRET, post_woocommerce, process_stored_events
from web.app import create_app

PAST_HOLD = timedelta(days=14, hours=1)
_orders = itertools.count(7000)


class WooShop:
    """Customers ordering at the WooCommerce shop: each delivery is a signed webhook."""

    def __init__(self, app: App, client: TestClient, sandbox: WooCommerceSandbox) -> None:
        self.app, self.client, self.sandbox = app, client, sandbox

    def sign_up(self, customer_id: int, email: str) -> Member:
        self._post("customer.created", customer_payload(customer_id, email=email))
        return self.member(customer_id)

    def order(
        self, customer_id: int, *, status: str = "completed", codes: list[str] | None = None
    ) -> dict[str, Any]:
        order_id = next(_orders)
        payload = order_payload(
            order_id,
            status,
            "100.00",
            customer_id=customer_id,
            coupon_lines=codes or [],
            customer_ip_address=f"198.51.100.{order_id % 250}",
            date_created=self.app.clock.now(),
            date_paid=self.app.clock.now(),
        )
        shipping = billing_address(address_1=f"Street {order_id}", email=None)
        payload["shipping"] = {k: v for k, v in shipping.items() if k != "email"}
        self._post("order.updated", payload)
        return payload

    def friend_code(self, referrer: Member) -> str:
        answer = self.client.get(f"/r/{referrer.referral_code}", follow_redirects=False)
        assert answer.status_code == 303, answer.text
        location = str(answer.headers["location"])
        assert location.startswith(self.sandbox.url.rstrip("/") + "/?apply_coupon=")
        return location.rsplit("=", 1)[1]

    def member(self, customer_id: int) -> Member:
        with self.app.database.sessions() as session:
            member = session.scalars(
                select(Member).where(Member.external_id == f"woocommerce:{customer_id}")
            ).one()
            session.expunge(member)
            return member

    def update(self, order: dict[str, Any], **changes: Any) -> None:
        self._post("order.updated", {**order, **changes})

    def _post(self, topic: str, payload: dict[str, Any]) -> None:
        answer = post_woocommerce(self.client, topic, payload)
        assert answer.status_code == 200, answer.text
        process_stored_events(self.app)


@pytest.fixture
def woo(app: App, tmp_path: Path, woocommerce_sandbox: WooCommerceSandbox) -> Iterator[WooShop]:
    folder = tmp_path / "journeys"
    folder.mkdir()
    (folder / "rewards.yaml").write_text(CATALOG, encoding="utf-8")
    (folder / "referral_reward.yaml").write_text(JOURNEY, encoding="utf-8")
    settings = make_settings(
        app.database,
        journeys_dir=folder,
        outbox_dir=tmp_path / "outbox",
        woocommerce_url=woocommerce_sandbox.url,
        woocommerce_consumer_key=woocommerce_sandbox.consumer_key,
        woocommerce_consumer_secret=woocommerce_sandbox.consumer_secret,
        woocommerce_webhook_secret=WOOCOMMERCE_SECRET,
        reward_code_secret="test-secret",
        provider_timeout_seconds=2.0,
        points_per_currency_unit="1",
        referral_friend_reward="friend_discount",
    )
    configured = App(settings, app.database, app.clock)
    published(configured, folder)
    with TestClient(create_app(configured)) as client:
        yield WooShop(configured, client, woocommerce_sandbox)


def test_a_clean_referral_at_woocommerce_pays_both_sides_once(
    woo: WooShop, clock: FrozenClock
) -> None:
    # Given a customer who has ordered, and her referral link
    woo.sign_up(1001, "anna@example.com")
    woo.order(1001)
    referrer = woo.member(1001)
    code = woo.friend_code(referrer)

    # Then the friend's coupon exists at WooCommerce: 10% off, once per customer
    [coupon] = [c for c in woo.sandbox.coupons() if c["code"].upper() == code.upper()]
    assert coupon["discount_type"] == "percent" and coupon["amount"] == "10.00"
    assert coupon["usage_limit_per_user"] == 1

    # When a friend's first order uses the coupon (WooCommerce lowercases coupon codes)
    woo.sign_up(2002, "bob@example.org")
    woo.order(2002, codes=[code.lower()])
    friend = woo.member(2002)

    # Then the referral is held until the return window is over, then paid once
    referral = referral_of(woo.app, friend)
    assert (referral.referrer_id, referral.status, referral.reasons) == (referrer.id, "held", None)
    assert payouts(woo.app) == 0
    clock.advance(PAST_HOLD)
    assert payouts(woo.app) == 1
    assert payouts(woo.app) == 0
    assert balance(woo.app, referrer) == 100 + REFERRAL_POINTS
    assert balance(woo.app, friend) == 100
    assert referral_events(woo.app) == 1


def test_a_refunded_first_order_at_woocommerce_pays_nothing(
    woo: WooShop, clock: FrozenClock
) -> None:
    woo.sign_up(1001, "anna@example.com")
    woo.order(1001)
    referrer = woo.member(1001)
    code = woo.friend_code(referrer)
    woo.sign_up(2002, "bob@example.org")
    first = woo.order(2002, codes=[code])

    # The friend sends the order back within the hold: WooCommerce marks it refunded
    woo.update(first, status="refunded")
    clock.advance(PAST_HOLD)

    assert payouts(woo.app) == 0
    friend = woo.member(2002)
    assert referral_of(woo.app, friend).status == "rejected"
    assert balance(woo.app, referrer) == 100
    assert balance(woo.app, friend) == 0
