"""WooCommerce emulator, driven through the official `woocommerce` client."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import httpx
import pytest

from sandbox.sink import WebhookSink
from sandbox.woocommerce import WooCommerceSandbox
from tests.sandbox.clients import woocommerce_client


def coupon(code: str = "LOYAL-7K2Q", **changes: Any) -> dict[str, Any]:
    return {
        "code": code,
        "discount_type": "fixed_cart",
        "amount": "10.00",
        "individual_use": True,
        "usage_limit": 1,
        "usage_limit_per_user": 1,
        "email_restrictions": ["Ann@Example.com"],
        "date_expires": "2030-01-01T00:00:00",
        **changes,
    }


def test_a_coupon_is_created_and_looked_up_by_code(woocommerce_sandbox: WooCommerceSandbox) -> None:
    api = woocommerce_client(woocommerce_sandbox)

    created = api.post("coupons", coupon())
    found = api.get("coupons", params={"code": "LOYAL-7K2Q"})
    missing = api.get("coupons", params={"code": "nope"})

    assert created.status_code == 201
    body = created.json()
    assert body["code"] == "loyal-7k2q"  # WooCommerce lower-cases codes
    assert (body["amount"], body["usage_limit"], body["individual_use"]) == ("10.00", 1, True)
    assert body["email_restrictions"] == ["ann@example.com"]
    assert body["date_expires"] == "2030-01-01T00:00:00"
    assert found.status_code == 200 and [c["id"] for c in found.json()] == [body["id"]]
    assert found.headers["X-WP-Total"] == "1"
    assert missing.json() == []
    assert [c["code"] for c in woocommerce_sandbox.coupons()] == ["loyal-7k2q"]
    # OAuth 1.0a over plain HTTP: the credentials travel as a signature, never the secret.
    recorded = woocommerce_sandbox.requests(method="POST")[0]
    assert "oauth_signature=" in recorded.query
    assert woocommerce_sandbox.consumer_secret not in recorded.query


def test_a_duplicate_code_is_refused(woocommerce_sandbox: WooCommerceSandbox) -> None:
    api = woocommerce_client(woocommerce_sandbox)
    api.post("coupons", coupon("LOYAL-DUP"))

    again = api.post("coupons", coupon("loyal-dup"))

    assert again.status_code == 400
    assert again.json() == {
        "code": "woocommerce_rest_coupon_code_already_exists",
        "message": "The coupon code already exists",
        "data": {"status": 400},
    }


@pytest.mark.parametrize(
    ("key", "secret", "code"),
    [
        (None, "cs_wrong", "woocommerce_rest_authentication_error"),  # signature mismatch
        ("ck_unknown", None, "woocommerce_rest_authentication_error"),  # unknown key
    ],
)
def test_bad_credentials_are_refused(
    woocommerce_sandbox: WooCommerceSandbox, key: str | None, secret: str | None, code: str
) -> None:
    api = woocommerce_client(woocommerce_sandbox, key=key, secret=secret)

    answer = api.post("coupons", coupon())

    assert answer.status_code == 401
    assert answer.json()["code"] == code
    assert woocommerce_sandbox.coupons() == []


def test_an_anonymous_request_may_not_create(woocommerce_sandbox: WooCommerceSandbox) -> None:
    # Basic auth over plain HTTP is not looked at: the request is anonymous.
    answer = httpx.post(
        f"{woocommerce_sandbox.url}/wp-json/wc/v3/coupons",
        json=coupon(),
        auth=(woocommerce_sandbox.consumer_key, woocommerce_sandbox.consumer_secret),
    )

    assert answer.status_code == 401
    assert answer.json() == {
        "code": "woocommerce_rest_cannot_create",
        "message": "Sorry, you are not allowed to create resources.",
        "data": {"status": 401},
    }


def test_a_replayed_signed_request_is_refused(woocommerce_sandbox: WooCommerceSandbox) -> None:
    woocommerce_client(woocommerce_sandbox).get("coupons", params={"code": "x"})
    signed = woocommerce_sandbox.requests()[0]

    replay = httpx.get(f"{woocommerce_sandbox.url}{signed.path}?{signed.query}")

    assert replay.status_code == 401
    assert replay.json()["message"] == "Invalid nonce - nonce has already been used."


def test_a_read_only_key_may_not_create(woocommerce_sandbox: WooCommerceSandbox) -> None:
    woocommerce_sandbox.key_permissions = "read"

    answer = woocommerce_client(woocommerce_sandbox).post("coupons", coupon())

    assert answer.status_code == 401
    assert answer.json()["message"] == "The API key provided does not have write permissions."


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"amount": 10}, "rest_invalid_param"),  # WordPress wants a string
        ({"discount_type": "bogus"}, "rest_invalid_param"),
        ({"date_expires": "2030-01-01"}, "rest_invalid_param"),
        ({"amount": "150", "discount_type": "percent"}, "coupon_invalid_amount"),
        ({"email_restrictions": ["not-an-email"]}, "coupon_invalid_email_address"),
    ],
)
def test_invalid_coupons_are_refused(
    woocommerce_sandbox: WooCommerceSandbox, changes: dict[str, Any], code: str
) -> None:
    answer = woocommerce_client(woocommerce_sandbox).post("coupons", coupon(**changes))

    assert answer.status_code == 400
    assert answer.json()["code"] == code
    assert woocommerce_sandbox.coupons() == []


def test_over_https_the_client_uses_basic_auth() -> None:
    with WooCommerceSandbox(https=True) as shop:
        api = woocommerce_client(shop)
        created = api.post("coupons", coupon())
        wrong = woocommerce_client(shop, secret="cs_wrong").get("coupons")
        recorded = shop.requests(method="POST")[0]

    assert created.status_code == 201
    assert recorded.headers["authorization"].startswith("Basic ")
    assert wrong.status_code == 401
    assert wrong.json()["message"] == "Consumer secret is invalid."


def test_injected_errors_use_wordpress_shape(woocommerce_sandbox: WooCommerceSandbox) -> None:
    woocommerce_sandbox.set_faults(error_rate=1.0, error_statuses=(500,))

    answer = woocommerce_client(woocommerce_sandbox).post("coupons", coupon())

    assert answer.status_code == 500
    assert answer.json()["code"] == "internal_server_error"
    assert woocommerce_sandbox.coupons() == []


def verify(body: bytes, secret: str, signature: str) -> bool:
    """WooCommerce's documented check: base64(HMAC-SHA256(secret, raw body))."""
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    return hmac.compare_digest(digest, signature.encode())


def test_webhooks_are_signed_and_the_ping_is_a_form(
    woocommerce_sandbox: WooCommerceSandbox, webhook_sink: WebhookSink
) -> None:
    order = woocommerce_sandbox.order_payload(
        4711,
        "completed",
        "129.90",
        "PLN",
        coupon_lines=["LOYAL-7K2Q"],
        refunds=[{"id": 4712, "total": "20.00", "reason": "damaged"}],
    )
    url = webhook_sink.url("/webhooks/woocommerce")

    woocommerce_sandbox.ping(url)
    woocommerce_sandbox.send_webhook("order.updated", order, url, delivery_id="d-1")
    woocommerce_sandbox.send_webhook("order.updated", order, url, tamper=True)

    ping, signed, tampered = webhook_sink.requests(path="/webhooks/woocommerce")
    secret = woocommerce_sandbox.webhook_secret
    assert ping.form() == {"webhook_id": "1"} and "x-wc-webhook-signature" not in ping.headers
    assert verify(signed.body, secret, signed.headers["x-wc-webhook-signature"])
    assert not verify(tampered.body, secret, tampered.headers["x-wc-webhook-signature"])
    assert signed.headers["x-wc-webhook-topic"] == "order.updated"
    assert signed.headers["x-wc-webhook-resource"] == "order"
    assert signed.headers["x-wc-webhook-event"] == "updated"
    assert signed.headers["x-wc-webhook-delivery-id"] == "d-1"
    assert signed.headers["x-wc-webhook-source"] == f"{woocommerce_sandbox.url}/"
    sent = signed.json()
    assert (sent["status"], sent["total"], sent["currency"]) == ("completed", "129.90", "PLN")
    assert sent["coupon_lines"][0]["code"] == "loyal-7k2q"
    assert sent["refunds"] == [{"id": 4712, "reason": "damaged", "total": "-20.00"}]
    assert sent["billing"]["email"] == "anna@example.com"
