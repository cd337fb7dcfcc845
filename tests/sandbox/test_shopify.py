"""Shopify emulator over TLS, driven through ShopifyAPI's GraphQL client."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
from typing import Any
from urllib.error import HTTPError

import httpx
import pytest
import shopify

from sandbox.shopify import ShopifySandbox
from sandbox.sink import WebhookSink
from sandbox.stack import SandboxStack
from tests.sandbox.clients import shopify_session

CREATE = """
mutation CreateReward($input: DiscountCodeBasicInput!) {
  discountCodeBasicCreate(basicCodeDiscount: $input) {
    codeDiscountNode {
      id
      codeDiscount {
        ... on DiscountCodeBasic { title codes(first: 1) { nodes { code } } endsAt }
      }
    }
    userErrors { field message code }
  }
}
"""
FREE_SHIPPING = """
mutation CreateFreeShipping($input: DiscountCodeFreeShippingInput!) {
  discountCodeFreeShippingCreate(freeShippingCodeDiscount: $input) {
    codeDiscountNode {
      id
      codeDiscount {
        ... on DiscountCodeFreeShipping { title codes(first: 1) { nodes { code } } endsAt }
      }
    }
    userErrors { field message code }
  }
}
"""
BY_CODE = """
query Find($code: String!) {
  codeDiscountNodeByCode(code: $code) {
    id
    codeDiscount {
      ... on DiscountCodeBasic {
        title
        status
        usageLimit
        codes(first: 1) { nodes { code } }
        customerSelection { ... on DiscountCustomers { customers { id } } }
        customerGets { value { ... on DiscountAmount { amount { amount currencyCode } } } }
      }
    }
  }
}
"""


def reward_input(code: str = "LOYAL-7K2Q", **changes: Any) -> dict[str, Any]:
    return {
        "title": "Loyalty reward 10 PLN",
        "code": code,
        "startsAt": "2025-01-01T00:00:00Z",
        "endsAt": "2030-01-01T00:00:00Z",
        "customerSelection": {"customers": {"add": ["gid://shopify/Customer/7001"]}},
        "customerGets": {
            "value": {"discountAmount": {"amount": "10.00", "appliesOnEachItem": False}},
            "items": {"all": True},
        },
        "appliesOncePerCustomer": True,
        "usageLimit": 1,
        **changes,
    }


def execute(query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(shopify.GraphQL().execute(query, variables))
    return result


def https(sandbox: ShopifySandbox) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=str(sandbox.ca_file)))


def test_a_discount_code_is_created_and_found_by_code(shopify_sandbox: ShopifySandbox) -> None:
    with shopify_session(shopify_sandbox):
        created = execute(CREATE, {"input": reward_input()})
        found = execute(BY_CODE, {"code": "loyal-7k2q"})  # codes ignore case
        missing = execute(BY_CODE, {"code": "NOPE"})

    payload = created["data"]["discountCodeBasicCreate"]
    assert payload["userErrors"] == []
    node = payload["codeDiscountNode"]
    assert node["id"].startswith("gid://shopify/DiscountCodeNode/")
    assert node["codeDiscount"] == {
        "title": "Loyalty reward 10 PLN",
        "codes": {"nodes": [{"code": "LOYAL-7K2Q"}]},
        "endsAt": "2030-01-01T00:00:00Z",
    }
    discount = found["data"]["codeDiscountNodeByCode"]
    assert discount["id"] == node["id"]
    assert discount["codeDiscount"]["status"] == "ACTIVE"
    assert discount["codeDiscount"]["usageLimit"] == 1
    assert discount["codeDiscount"]["customerSelection"] == {
        "customers": [{"id": "gid://shopify/Customer/7001"}]
    }
    assert discount["codeDiscount"]["customerGets"]["value"]["amount"] == {
        "amount": "10.00",
        "currencyCode": "PLN",
    }
    assert missing["data"] == {"codeDiscountNodeByCode": None}
    (stored,) = shopify_sandbox.codes()
    assert stored["code"] == "LOYAL-7K2Q"
    assert stored["customers"] == ["gid://shopify/Customer/7001"]
    assert stored["usage_limit"] == 1 and stored["ends_at"] == "2030-01-01T00:00:00Z"
    assert stored["value"] == {"amount": "10.00", "applies_on_each_item": False}
    recorded = shopify_sandbox.requests(path="/admin/api/2025-01/graphql.json")[0]
    assert recorded.headers["x-shopify-access-token"] == shopify_sandbox.access_token


def test_every_answer_carries_the_query_cost(shopify_sandbox: ShopifySandbox) -> None:
    with shopify_session(shopify_sandbox):
        created = execute(CREATE, {"input": reward_input()})
        found = execute(BY_CODE, {"code": "LOYAL-7K2Q"})

    spent = created["extensions"]["cost"]
    # The bucket refills continuously (50 points a second) between the spend and the answer.
    available = spent["throttleStatus"].pop("currentlyAvailable")
    assert spent == {
        "requestedQueryCost": 10,
        "actualQueryCost": 10,
        "throttleStatus": {"maximumAvailable": 1000.0, "restoreRate": 50.0},
    }
    assert 990 <= available < 1000
    cost = found["extensions"]["cost"]
    assert cost["requestedQueryCost"] == cost["actualQueryCost"] > 1
    assert 980 <= cost["throttleStatus"]["currentlyAvailable"] < 1000


def test_a_duplicate_code_is_a_taken_user_error(shopify_sandbox: ShopifySandbox) -> None:
    with shopify_session(shopify_sandbox):
        execute(CREATE, {"input": reward_input("LOYAL-DUP")})
        again = execute(CREATE, {"input": reward_input("loyal-dup")})

    assert again["data"]["discountCodeBasicCreate"] == {
        "codeDiscountNode": None,
        "userErrors": [
            {
                "field": ["basicCodeDiscount", "code"],
                "message": "Code must be unique. Please try a different code.",
                "code": "TAKEN",
            }
        ],
    }
    assert len(shopify_sandbox.codes()) == 1


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"usageLimit": 0}, ["basicCodeDiscount", "usageLimit"], "GREATER_THAN"),
        (
            {"customerSelection": {"customers": {"add": ["7001"]}}},
            ["basicCodeDiscount", "customerSelection", "customers", "add"],
            "INVALID",
        ),
        ({"endsAt": "2024-01-01T00:00:00Z"}, ["basicCodeDiscount", "endsAt"], "INVALID"),
        ({"code": ""}, ["basicCodeDiscount", "code"], "BLANK"),
        (
            {"customerGets": {"value": {"percentage": 1.5}, "items": {"all": True}}},
            ["basicCodeDiscount", "customerGets", "value", "percentage"],
            "VALUE_OUTSIDE_RANGE",
        ),
    ],
)
def test_invalid_inputs_are_user_errors(
    shopify_sandbox: ShopifySandbox, changes: dict[str, Any], field: list[str], code: str
) -> None:
    with shopify_session(shopify_sandbox):
        answer = execute(CREATE, {"input": reward_input(**changes)})

    (error,) = answer["data"]["discountCodeBasicCreate"]["userErrors"]
    assert (error["field"], error["code"]) == (field, code)
    assert shopify_sandbox.codes() == []


def test_a_free_shipping_code(shopify_sandbox: ShopifySandbox) -> None:
    shipping = reward_input("SHIP-FREE-1")
    del shipping["customerGets"]
    shipping["destination"] = {"all": True}

    with shopify_session(shopify_sandbox):
        answer = execute(FREE_SHIPPING, {"input": shipping})

    payload = answer["data"]["discountCodeFreeShippingCreate"]
    assert payload["userErrors"] == []
    assert payload["codeDiscountNode"]["codeDiscount"]["codes"]["nodes"] == [
        {"code": "SHIP-FREE-1"}
    ]
    assert shopify_sandbox.codes()[0]["value"] == {"free_shipping": True}


def test_documents_are_validated_against_the_schema(shopify_sandbox: ShopifySandbox) -> None:
    with shopify_session(shopify_sandbox):
        unknown = execute("{ shop { name bogus } }")
        bad_date = execute(CREATE, {"input": reward_input(startsAt="next tuesday")})

    assert unknown["errors"][0]["message"] == "Field 'bogus' doesn't exist on type 'Shop'"
    assert "data" not in unknown
    assert "startsAt" in bad_date["errors"][0]["message"]
    assert shopify_sandbox.codes() == []


def test_a_wrong_token_is_refused(shopify_sandbox: ShopifySandbox) -> None:
    with shopify_session(shopify_sandbox, token="shpat_wrong"), pytest.raises(HTTPError) as caught:
        execute(BY_CODE, {"code": "X"})

    assert caught.value.code == 401
    # ShopifyAPI reads (and prints) the body itself, so read it from the recorder.
    assert json.loads(shopify_sandbox.requests()[-1].response_body) == {
        "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
    }


def test_an_empty_bucket_throttles(shopify_sandbox: ShopifySandbox) -> None:
    shopify_sandbox.set_throttle(maximum_available=25, restore_rate=0.5)

    with shopify_session(shopify_sandbox):
        answers = [execute(CREATE, {"input": reward_input(f"CODE-{i}")}) for i in range(3)]

    assert [a.get("errors") is None for a in answers] == [True, True, False]
    throttled = answers[2]
    assert throttled["errors"] == [
        {
            "message": "Throttled",
            "extensions": {
                "code": "THROTTLED",
                "documentation": "https://shopify.dev/api/usage/rate-limits",
            },
        }
    ]
    cost = throttled["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 10 and cost["actualQueryCost"] is None
    assert cost["throttleStatus"]["maximumAvailable"] == 25.0
    assert cost["throttleStatus"]["currentlyAvailable"] < 10
    assert cost["throttleStatus"]["restoreRate"] == 0.5
    assert [c["code"] for c in shopify_sandbox.codes()] == ["CODE-0", "CODE-1"]
    assert shopify_sandbox.requests(status=200)[-1].json()["variables"]["input"]["code"] == "CODE-2"


def test_a_query_above_the_bucket_is_refused_whole(shopify_sandbox: ShopifySandbox) -> None:
    query = '{ codeDiscountNodeByCode(code: "X") { id codeDiscount { ... on DiscountCodeBasic '
    query += "{ codes(first: 2000) { nodes { code } } } } } }"

    with shopify_session(shopify_sandbox):
        answer = execute(query)

    (error,) = answer["errors"]
    assert error["extensions"] == {"code": "MAX_COST_EXCEEDED", "cost": 2004, "maxCost": 1000}
    assert "data" not in answer


def test_injected_errors_and_dropped_answers(shopify_sandbox: ShopifySandbox) -> None:
    body = {"query": CREATE, "variables": {"input": reward_input()}}
    headers = {"X-Shopify-Access-Token": shopify_sandbox.access_token}

    with https(shopify_sandbox) as client:
        shopify_sandbox.set_faults(error_rate=1.0, error_statuses=(500,))
        failed = client.post(shopify_sandbox.graphql_url, json=body, headers=headers)
        shopify_sandbox.set_faults(error_rate=0.0, drop_rate=1.0, drop_hold_s=1.0)
        with pytest.raises(httpx.ReadTimeout):
            client.post(shopify_sandbox.graphql_url, json=body, headers=headers, timeout=0.3)

    assert failed.status_code == 500
    assert failed.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert [c["code"] for c in shopify_sandbox.codes()] == ["LOYAL-7K2Q"]  # applied, unanswered
    assert [r.fault for r in shopify_sandbox.requests()] == ["error_500", "dropped"]


def verify(body: bytes, secret: str, signature: str) -> bool:
    """Shopify's documented check: base64(HMAC-SHA256(secret, raw body))."""
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    return hmac.compare_digest(digest, signature.encode())


def test_webhooks_are_signed_and_retries_keep_their_id(
    shopify_sandbox: ShopifySandbox, webhook_sink: WebhookSink
) -> None:
    customer = shopify_sandbox.customer_payload(7001, email="ann@example.com", phone="+48600100200")
    order = shopify_sandbox.order_payload(
        820982911946154508, "129.90", "PLN", customer=customer, discount_codes=["LOYAL-7K2Q"]
    )
    url = webhook_sink.url("/webhooks/shopify")

    first = shopify_sandbox.send_webhook("orders/paid", order, url)
    webhook_id = first.request.headers["X-Shopify-Webhook-Id"]
    shopify_sandbox.send_webhook("orders/paid", order, url, webhook_id=webhook_id)
    shopify_sandbox.send_webhook("orders/paid", order, url, tamper=True)

    posts = webhook_sink.requests(path="/webhooks/shopify")
    secret = shopify_sandbox.webhook_secret
    assert [verify(p.body, secret, p.headers["x-shopify-hmac-sha256"]) for p in posts] == [
        True,
        True,
        False,
    ]
    first_post, retry, _ = posts
    assert first_post.headers["x-shopify-topic"] == "orders/paid"
    assert first_post.headers["x-shopify-shop-domain"] == shopify_sandbox.shop_domain
    assert first_post.headers["x-shopify-api-version"] == "2025-01"
    assert retry.headers["x-shopify-webhook-id"] == webhook_id
    assert retry.headers["x-shopify-event-id"] == first_post.headers["x-shopify-event-id"]
    assert first_post.headers["x-shopify-triggered-at"].endswith("Z")
    sent = first_post.json()
    assert sent["total_price"] == "129.90" and sent["currency"] == "PLN"
    assert sent["customer"]["id"] == 7001
    assert sent["customer"]["sms_marketing_consent"] is None  # no sms_consent given
    assert sent["discount_codes"] == [
        {"code": "LOYAL-7K2Q", "amount": "0.00", "type": "fixed_amount"}
    ]
    assert sent["client_details"]["browser_ip"] == sent["browser_ip"]
    assert len(shopify_sandbox.webhook_deliveries()) == 3


def test_privacy_and_refund_payloads(shopify_sandbox: ShopifySandbox) -> None:
    redact = shopify_sandbox.redact_payload(7001, orders_to_redact=[1, 2])
    request = shopify_sandbox.data_request_payload(7001, orders_requested=[1])
    refund = shopify_sandbox.refund_payload(509562969, 450789469, "20.00", "PLN")
    customer = shopify_sandbox.customer_payload(
        7001, phone="+48600100200", email_consent="unsubscribed", sms_consent="subscribed"
    )

    assert redact["shop_domain"] == shopify_sandbox.shop_domain
    assert redact["customer"]["id"] == 7001 and redact["orders_to_redact"] == [1, 2]
    assert request["orders_requested"] == [1] and "data_request" in request
    (transaction,) = refund["transactions"]
    assert (transaction["kind"], transaction["amount"], transaction["status"]) == (
        "refund",
        "20.00",
        "success",
    )
    assert customer["email_marketing_consent"]["state"] == "unsubscribed"
    assert customer["sms_marketing_consent"]["state"] == "subscribed"
    assert customer["sms_marketing_consent"]["consent_collected_from"] == "SHOPIFY"


def test_the_printed_settings_reach_both_shops() -> None:
    with SandboxStack.create() as stack:
        env = stack.environment()
        context = ssl.create_default_context(cafile=env["SHOPIFY_CA_BUNDLE"])
        shop = httpx.post(
            f"https://{env['SHOPIFY_SHOP_DOMAIN']}/admin/api/{env['SHOPIFY_API_VERSION']}"
            "/graphql.json",
            json={"query": "{ shop { myshopifyDomain } }"},
            headers={"X-Shopify-Access-Token": env["SHOPIFY_ACCESS_TOKEN"]},
            verify=context,
        )
        storefront = httpx.get(env["SHOP_URL"])

    assert shop.json()["data"] == {"shop": {"myshopifyDomain": env["SHOPIFY_SHOP_DOMAIN"]}}
    assert env["SHOPIFY_CA_BUNDLE"] == env["SALESFORCE_CA_BUNDLE"]  # one CA for both
    assert storefront.status_code == 200
