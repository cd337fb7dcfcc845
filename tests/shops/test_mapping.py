"""Shop topics turned into our events, upserts and privacy requests (pure functions)."""

from __future__ import annotations

from sandbox.shopify_payloads import address, customer_payload, order_payload, refund_payload
from sandbox.woocommerce_payloads import order_payload as woo_order
from shops.webhooks import (
    Privacy,
    address_hash,
    shopify_actions,
    shopify_profile,
    woocommerce_actions,
)


def test_a_paid_order_names_its_customer_and_carries_what_referral_checks_need() -> None:
    order = order_payload(
        1, "99.90", "EUR", customer=customer_payload(42), discount_codes=["A", "B"],
        current_total="89.90", shipping_address=address(),
    )  # fmt: skip

    [event] = shopify_actions("orders/paid", order).events

    assert (event.type, event.id, event.member) == (
        "order.completed",
        "orders/paid:1",
        "shopify:42",
    )
    assert event.data["total"] == "89.90"  # current_total_price: after order edits
    assert event.data["currency"] == "EUR"
    assert event.data["discount_codes"] == ["A", "B"]
    assert event.profile is not None and event.profile["email"] == "anna@example.com"


def test_guest_orders_and_unknown_topics_do_nothing() -> None:
    assert shopify_actions("orders/paid", order_payload(2, "10", customer=None)).ignored
    assert shopify_actions("products/create", {"id": 1}).ignored == "topic not used"
    assert woocommerce_actions("order.updated", woo_order(3, "completed")).ignored == "guest order"


def test_a_refund_counts_only_successful_refund_transactions() -> None:
    refund = refund_payload(9, 1, "30.00")
    refund["transactions"] += [
        {**refund["transactions"][0], "amount": "5.00", "status": "failure"},
        {**refund["transactions"][0], "amount": "7.00", "kind": "void"},
        {**refund["transactions"][0], "amount": "2.50"},
    ]

    [event] = shopify_actions("refunds/create", refund).events

    assert event.data == {"order_id": "1", "total": "32.50", "refund_id": "9"}
    assert event.member is None and event.order_event == "orders/paid:1"


def test_shopify_consent_states_become_granted_revoked_or_nothing() -> None:
    def consent(state: str) -> object:
        return shopify_profile(customer_payload(1, email_consent=state)).get("email_consent")

    assert [consent(s) for s in ("subscribed", "unsubscribed", "not_subscribed", "pending")] == [
        True,
        False,
        False,
        None,
    ]


def test_privacy_topics_name_the_member_by_customer_id() -> None:
    redact = shopify_actions("customers/redact", {"customer": {"id": 5, "email": "a@b.c"}})
    request = shopify_actions(
        "customers/data_request", {"customer": {"id": 5}, "data_request": {"id": 77}}
    )

    assert redact.privacy == Privacy("erase", external_id="shopify:5", email="a@b.c")
    assert request.privacy == Privacy("export", external_id="shopify:5", request_id="77")
    assert shopify_actions("shop/redact", {"shop_id": 1}).privacy == Privacy("erase_shop")
    assert "a@b.c" not in str(redact.ids)


def test_a_refunded_woocommerce_order_claws_back_its_refunds_then_the_rest() -> None:
    order = woo_order(8, "refunded", "100.00", customer_id=3, refunds=[{"id": 1, "total": "40.00"}])

    actions = woocommerce_actions("order.updated", order)

    assert [(e.type, e.id, e.data.get("total")) for e in actions.events] == [
        ("order.refunded", "refund:1", "40.00"),
        ("order.refunded", "order:8:refunded", None),
    ]


def test_the_address_hash_ignores_case_spacing_and_names() -> None:
    one = address(first_name="Anna", address1="ul. Polna 1", city="Warszawa")
    two = address(first_name="Ben", address1="UL POLNA  1", city="warszawa")

    assert address_hash(one) == address_hash(two)
    assert address_hash(one) != address_hash(address(address1="ul. Polna 2"))
    assert address_hash({}) is None
