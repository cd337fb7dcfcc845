"""Reward codes at the Shopify and WooCommerce emulators: made once, found after a lost answer,
points back after a refusal."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from loyalty.app import App
from loyalty.errors import RetriableError
from loyalty.redemptions import redeem_member
from loyalty.rewards import RedemptionState
from loyalty.states import LedgerKind
from sandbox.shopify import ShopifySandbox
from sandbox.woocommerce import WooCommerceSandbox
from shops.codes import CodeRequest, ShopCode, code_for, issue_code, shop_for
from shops.shopify import ShopifyShop
from shops.woocommerce import WooCommerceShop
from tests.rewards.support import (
    balance,
    events_of,
    ledger_entries,
    member_with_points,
    redemptions,
    rewards_app,
)

SECRET = "test-secret"


def shopify_app(
    app: App, tmp_path: Path, sandbox: ShopifySandbox, *, timeout_seconds: float = 1.0
) -> App:
    return rewards_app(
        app,
        tmp_path,
        shopify_shop_domain=sandbox.shop_domain,
        shopify_access_token=sandbox.access_token,
        shopify_api_version=sandbox.api_version,
        shopify_ca_bundle=sandbox.ca_file,
        reward_code_secret=SECRET,
        provider_timeout_seconds=timeout_seconds,
    )


def woocommerce_app(app: App, tmp_path: Path, sandbox: WooCommerceSandbox) -> App:
    return rewards_app(
        app,
        tmp_path,
        woocommerce_url=sandbox.url,
        woocommerce_consumer_key=sandbox.consumer_key,
        woocommerce_consumer_secret=sandbox.consumer_secret,
        reward_code_secret=SECRET,
        provider_timeout_seconds=1.0,
    )


def redeem(app: App, external_id: str, reward: str, key: str) -> int:
    redeemed = redeem_member(
        app.database,
        external_id,
        reward,
        key,
        settings=app.settings,
        now=app.clock.now(),
        currency="PLN" if reward == "ten_off" else None,
    )
    return redeemed.redemption.id


def test_a_shopify_code_is_limited_to_the_customer_once_until_expiry(
    app: App, tmp_path: Path, shopify_sandbox: ShopifySandbox
) -> None:
    app = shopify_app(app, tmp_path, shopify_sandbox)
    member_with_points(app, 500, external_id="m-1", attributes={"shopify_customer_id": "7001"})
    redemption_id = redeem(app, "m-1", "ten_off", "k-1")
    caused = issue_code(app, redemption_id)
    (code,) = shopify_sandbox.codes()
    assert code["code"] == code_for(redemption_id, SECRET)
    assert code["customers"] == ["gid://shopify/Customer/7001"]
    assert (code["usage_limit"], code["applies_once_per_customer"]) == (1, True)
    (issued,) = redemptions(app.database)
    assert issued.state == RedemptionState.ISSUED and issued.shop == "shopify"
    assert code["ends_at"] == issued.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert issued.shop_code_id == code["id"]
    (event,) = events_of(app.database, "reward.redeemed")
    assert caused == [event.id] and event.payload["code"] == issued.code
    assert issue_code(app, redemption_id) == []  # a second run asks nothing of the shop
    assert len(shopify_sandbox.codes()) == 1


def test_free_shipping_at_shopify(
    app: App, tmp_path: Path, shopify_sandbox: ShopifySandbox
) -> None:
    app = shopify_app(app, tmp_path, shopify_sandbox)
    member_with_points(app, 500, external_id="8001")  # a shop customer id as external id
    issue_code(app, redeem(app, "8001", "free_ship", "k-1"))
    (code,) = shopify_sandbox.codes()
    assert code["kind"] == "free_shipping"
    assert code["customers"] == ["gid://shopify/Customer/8001"]


def test_fifty_concurrent_redemptions_with_one_key_make_one_code(
    app: App, tmp_path: Path, shopify_sandbox: ShopifySandbox
) -> None:
    # (fifty TLS handshakes at once with the emulator in this process: more than a second
    # on a loaded machine, and a timeout here is not what this test is about)
    app = shopify_app(app, tmp_path, shopify_sandbox, timeout_seconds=60.0)
    member = member_with_points(app, 1000, external_id="m-1")
    start = threading.Barrier(50)
    failures: list[BaseException] = []

    def request() -> None:
        start.wait()
        try:
            issue_code(app, redeem(app, "m-1", "ten_off", "one-key"))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=request) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(shopify_sandbox.codes()) == 1
    redeems = [e for e in ledger_entries(app.database, member.id) if e.kind == LedgerKind.REDEEM]
    assert len(redeems) == 1
    (issued,) = redemptions(app.database)
    assert issued.state == RedemptionState.ISSUED
    assert len(events_of(app.database, "reward.redeemed")) == 1
    assert balance(app.database, member.id) == 900


class _DropCreate(ShopifyShop):
    """The real adapter, with the emulator dropping the answer to the create (it still lands)."""

    sandbox: ShopifySandbox | None = None

    def create(self, request: CodeRequest) -> ShopCode:
        assert self.sandbox is not None
        self.sandbox.set_faults(drop_rate=1.0, drop_hold_s=3.0)
        try:
            return super().create(request)
        finally:
            self.sandbox.set_faults(drop_rate=0.0)


def test_a_dropped_answer_still_makes_one_code(
    app: App, tmp_path: Path, shopify_sandbox: ShopifySandbox
) -> None:
    app = shopify_app(app, tmp_path, shopify_sandbox)
    member_with_points(app, 500, external_id="m-1")
    redemption_id = redeem(app, "m-1", "ten_off", "k-1")
    base = shop_for(app.settings)
    assert isinstance(base, ShopifyShop)
    shop = _DropCreate(base.domain, base.access_token, base.api_version, base.ca_file, 1.0)
    shop.sandbox = shopify_sandbox
    issue_code(app, redemption_id, shop=shop)
    assert len(shopify_sandbox.codes()) == 1
    # Looked up, created (answer lost), looked up again: found.
    assert len(shopify_sandbox.requests(method="POST")) == 3
    assert redemptions(app.database)[0].state == RedemptionState.ISSUED
    # A second try (the retry a lost answer would cause) finds the code and makes none.
    assert issue_code(app, redemption_id) == []
    assert len(shopify_sandbox.codes()) == 1


def test_a_shop_that_drops_every_answer_leaves_the_redemption_pending_for_a_retry(
    app: App, tmp_path: Path, shopify_sandbox: ShopifySandbox
) -> None:
    app = shopify_app(app, tmp_path, shopify_sandbox)
    member = member_with_points(app, 500, external_id="m-1")
    redemption_id = redeem(app, "m-1", "ten_off", "k-1")
    shopify_sandbox.set_faults(drop_rate=1.0, drop_hold_s=3.0)
    with pytest.raises(RetriableError):
        issue_code(app, redemption_id)
    shopify_sandbox.set_faults(drop_rate=0.0)
    assert redemptions(app.database)[0].state == RedemptionState.PENDING
    assert balance(app.database, member.id) == 400
    issue_code(app, redemption_id)
    assert len(shopify_sandbox.codes()) == 1


def test_a_refused_code_returns_the_points(
    app: App, tmp_path: Path, shopify_sandbox: ShopifySandbox
) -> None:
    app = shopify_app(app, tmp_path, shopify_sandbox)
    member = member_with_points(app, 500, external_id="m-1")
    before = ledger_entries(app.database, member.id)
    redemption_id = redeem(app, "m-1", "ten_off", "k-1")
    shopify_sandbox.revoke_access()
    issue_code(app, redemption_id)
    (failed,) = redemptions(app.database)
    assert failed.state == RedemptionState.FAILED
    assert failed.error is not None and "shopify refused the code: HTTP 401" in failed.error
    assert balance(app.database, member.id) == 500
    returned = ledger_entries(app.database, member.id)[-1]
    assert (returned.delta, returned.idempotency_key) == (
        100,
        f"redemption:{redemption_id}:returned",
    )
    assert len(ledger_entries(app.database, member.id)) == len(before) + 2
    assert events_of(app.database, "reward.redeemed") == []
    assert issue_code(app, redemption_id) == []  # settled: nothing more happens


def test_throttling_is_retriable_with_a_wait(
    app: App, tmp_path: Path, shopify_sandbox: ShopifySandbox
) -> None:
    app = shopify_app(app, tmp_path, shopify_sandbox)
    member_with_points(app, 500, external_id="m-1")
    redemption_id = redeem(app, "m-1", "ten_off", "k-1")
    shopify_sandbox.set_throttle(currently_available=0, restore_rate=50)
    with pytest.raises(RetriableError) as caught:
        issue_code(app, redemption_id)
    assert caught.value.retry_after is not None and caught.value.retry_after > 0
    assert redemptions(app.database)[0].state == RedemptionState.PENDING


def test_a_woocommerce_coupon_is_limited_to_the_members_email(
    app: App, tmp_path: Path, woocommerce_sandbox: WooCommerceSandbox
) -> None:
    app = woocommerce_app(app, tmp_path, woocommerce_sandbox)
    member = member_with_points(app, 500, external_id="m-1", email="ann@example.com")
    redemption_id = redeem(app, "m-1", "ten_off", "k-1")
    issue_code(app, redemption_id)
    issue_code(app, redemption_id)
    (coupon,) = woocommerce_sandbox.coupons()
    assert coupon["code"].lower() == code_for(redemption_id, SECRET).lower()
    assert coupon["email_restrictions"] == ["ann@example.com"]
    assert (coupon["usage_limit"], coupon["discount_type"], coupon["amount"]) == (
        1,
        "fixed_cart",
        "10.00",
    )
    assert coupon["date_expires"] is not None
    assert redemptions(app.database)[0].state == RedemptionState.ISSUED
    assert balance(app.database, member.id) == 400


def test_a_woocommerce_coupon_whose_answer_was_dropped_is_found(
    app: App, tmp_path: Path, woocommerce_sandbox: WooCommerceSandbox
) -> None:
    app = woocommerce_app(app, tmp_path, woocommerce_sandbox)
    member_with_points(app, 500, external_id="m-1", email="ann@example.com")
    redemption_id = redeem(app, "m-1", "free_ship", "k-1")
    base = shop_for(app.settings)
    assert isinstance(base, WooCommerceShop)

    class DropCreate(WooCommerceShop):
        def create(self, request: CodeRequest) -> ShopCode:
            woocommerce_sandbox.set_faults(drop_rate=1.0, drop_hold_s=3.0)
            try:
                return super().create(request)
            finally:
                woocommerce_sandbox.set_faults(drop_rate=0.0)

    shop = DropCreate(base.url, base.consumer_key, base.consumer_secret, 1.0)
    issue_code(app, redemption_id, shop=shop)
    (coupon,) = woocommerce_sandbox.coupons()
    assert coupon["free_shipping"] is True
    assert redemptions(app.database)[0].state == RedemptionState.ISSUED


def test_a_woocommerce_refusal_returns_the_points(
    app: App, tmp_path: Path, woocommerce_sandbox: WooCommerceSandbox
) -> None:
    app = woocommerce_app(app, tmp_path, woocommerce_sandbox)
    member = member_with_points(app, 500, external_id="m-1", email="ann@example.com")
    redemption_id = redeem(app, "m-1", "ten_off", "k-1")
    woocommerce_sandbox.revoke_keys()
    issue_code(app, redemption_id)
    (failed,) = redemptions(app.database)
    assert failed.state == RedemptionState.FAILED and failed.error
    assert "woocommerce refused the code: HTTP 401" in failed.error
    assert balance(app.database, member.id) == 500
    assert woocommerce_sandbox.coupons() == []
