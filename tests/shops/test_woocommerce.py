"""POST /webhooks/woocommerce: the ping, signed order and customer webhooks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.testclient import TestClient

from loyalty.app import App
from sandbox.woocommerce_payloads import customer_payload, order_payload
from tests.conftest import START
from tests.shops.support import (
    balance,
    counts,
    member,
    post_woocommerce,
    process_stored_events,
)
from web.signatures import shopify_signature_ok, woocommerce_signature_ok

ANNA = 31


def order(order_id: int, status: str, total: str, **fields: Any) -> dict[str, Any]:
    return order_payload(
        order_id, status, total, customer_id=ANNA, date_created=START, date_paid=START, **fields
    )


def test_the_creation_ping_is_answered_and_stores_nothing(
    shop_app: App, shop_client: TestClient
) -> None:
    answer = shop_client.post(
        "/webhooks/woocommerce",
        content=b"webhook_id=7",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert answer.status_code == 200
    assert counts(shop_app)["deliveries"] == 0


def test_a_completed_order_earns_once(shop_app: App, shop_client: TestClient) -> None:
    # Given an order that is paid (processing), then completed, then edited again
    post_woocommerce(shop_client, "order.created", order(501, "processing", "150.00"))
    completed = order(501, "completed", "150.00")
    answers = [
        post_woocommerce(shop_client, "order.updated", completed, delivery_id="d-1"),
        post_woocommerce(shop_client, "order.updated", completed, delivery_id="d-1"),
        post_woocommerce(shop_client, "order.updated", completed, delivery_id="d-2"),
    ]
    process_stored_events(shop_app)

    # Then it earned once, for the member made from its billing details
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert counts(shop_app)["events"] == 1
    assert balance(shop_app, f"woocommerce:{ANNA}") == 150
    assert member(shop_app, f"woocommerce:{ANNA}").email == "anna@example.com"


def test_a_processing_order_earns_when_that_is_the_status_setting(
    shop_app: App, shop_client: TestClient
) -> None:
    shop_app.settings = shop_app.settings.model_copy(
        update={"woocommerce_earn_on_status": "processing"}
    )

    post_woocommerce(shop_client, "order.created", order(502, "processing", "40.00"))
    process_stored_events(shop_app)

    assert balance(shop_app, f"woocommerce:{ANNA}") == 40


def test_refunds_claw_back_by_amount_and_a_refunded_order_keeps_nothing(
    shop_app: App, shop_client: TestClient
) -> None:
    # Given a completed order of 200
    post_woocommerce(shop_client, "order.updated", order(503, "completed", "200.00"))
    process_stored_events(shop_app)

    # When 50 is refunded (the order lists its refund)
    partial = order(503, "completed", "200.00", refunds=[{"id": 71, "total": "50.00"}])
    post_woocommerce(shop_client, "order.updated", partial)
    process_stored_events(shop_app)
    after_partial = balance(shop_app, f"woocommerce:{ANNA}")

    # And then the order is refunded in full
    refunded = order(
        503,
        "refunded",
        "200.00",
        refunds=[{"id": 71, "total": "50.00"}, {"id": 72, "total": "150.00"}],
    )
    post_woocommerce(shop_client, "order.updated", refunded)
    process_stored_events(shop_app)

    # Then a quarter went back, then the rest
    assert after_partial == 150
    assert balance(shop_app, f"woocommerce:{ANNA}") == 0


def test_a_bad_signature_gets_401_and_stores_nothing(
    shop_app: App, shop_client: TestClient
) -> None:
    answers = [
        post_woocommerce(
            shop_client, "order.updated", order(504, "completed", "10.00"), secret="wrong"
        ),
        shop_client.post(
            "/webhooks/woocommerce",
            content=b'{"id": 504, "status": "completed"}',
            headers={"X-WC-Webhook-Topic": "order.updated"},
        ),
        # A ping-shaped body with a topic is a delivery like any other: it needs a signature
        shop_client.post(
            "/webhooks/woocommerce",
            content=b"webhook_id=7",
            headers={"X-WC-Webhook-Topic": "order.updated", "X-WC-Webhook-Signature": "x"},
        ),
    ]

    assert [answer.status_code for answer in answers] == [401, 401, 401]
    assert counts(shop_app) == {
        "deliveries": 0,
        "events": 0,
        "members": 0,
        "consents": 0,
        "ledger": 0,
    }


def test_a_customer_is_created_and_updated(shop_app: App, shop_client: TestClient) -> None:
    post_woocommerce(shop_client, "customer.created", customer_payload(ANNA))
    post_woocommerce(
        shop_client, "customer.updated", customer_payload(ANNA, email="anna.nowak@example.com")
    )
    process_stored_events(shop_app)

    assert member(shop_app, f"woocommerce:{ANNA}").email == "anna.nowak@example.com"
    assert counts(shop_app)["deliveries"] == 2


def test_a_late_delivery_of_an_older_customer_update_changes_nothing(
    shop_app: App, shop_client: TestClient
) -> None:
    newer = customer_payload(
        ANNA, email="anna.nowak@example.com", date_modified=START + timedelta(hours=2)
    )
    older = customer_payload(
        ANNA, email="anna@example.com", date_modified=START + timedelta(hours=1)
    )
    post_woocommerce(shop_client, "customer.updated", newer)
    post_woocommerce(shop_client, "customer.updated", older)  # WooCommerce retried it late
    process_stored_events(shop_app)

    assert member(shop_app, f"woocommerce:{ANNA}").email == "anna.nowak@example.com"
    assert counts(shop_app)["deliveries"] == 2


def test_both_shops_signatures_are_base64_hmac_sha256_of_the_raw_bytes() -> None:
    # Computed apart from this code:
    # printf '{"id":1}' | openssl dgst -sha256 -hmac secret -binary | base64
    signature = "A971iWIMgT8Zj9A9eWfikrFj7wQ16/Qwcc4OlRl2PLc="
    body = b'{"id":1}'

    assert woocommerce_signature_ok("secret", body, signature)
    assert shopify_signature_ok("secret", body, signature)
    assert not shopify_signature_ok("secret", b'{"id": 1}', signature)
    assert not shopify_signature_ok("secret", body, signature.lower())
    assert not shopify_signature_ok("secret", body, "Ä" + signature)
    assert not shopify_signature_ok(None, body, signature)
    assert not shopify_signature_ok("", body, signature)
