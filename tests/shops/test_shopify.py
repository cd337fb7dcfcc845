"""POST /webhooks/shopify: signed deliveries stored once, points earned once, privacy topics."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from starlette.testclient import TestClient

from automations import runtime
from automations.runtime.broker import build_broker, embedded_worker
from automations.runtime.ticks import relay_shop_deliveries
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.models import Event, ProviderEvent
from sandbox.shopify_payloads import (
    address,
    customer_payload,
    data_request_payload,
    order_payload,
    redact_payload,
    refund_payload,
    shop_redact_payload,
)
from tests.conftest import START
from tests.shops.support import (
    SHOP_DOMAIN,
    balance,
    consents,
    counts,
    member,
    post_shopify,
    process_stored_events,
)

SHOP_ID = 548380009
ANNA = 207119551


def anna(**fields: Any) -> dict[str, Any]:
    return customer_payload(ANNA, created_at=START, updated_at=START, **fields)


def paid(order_id: int, total: str, **fields: Any) -> dict[str, Any]:
    return order_payload(order_id, total, customer=anna(), created_at=START, **fields)


def test_an_order_paid_earns_once_however_often_it_is_delivered(
    shop_app: App, shop_client: TestClient
) -> None:
    # Given an order paid by a customer the program has never seen
    order = paid(1001, "120.00", shipping_address=address(), discount_codes=["SPRING10"])

    # When Shopify delivers it three times (retries) and once more under another webhook id
    answers = [post_shopify(shop_client, "orders/paid", order, webhook_id="wh-a") for _ in range(3)]
    answers.append(post_shopify(shop_client, "orders/paid", order, webhook_id="wh-b"))
    process_stored_events(shop_app)

    # Then every delivery is answered, and the order is stored and earned once
    assert [answer.status_code for answer in answers] == [200, 200, 200, 200]
    assert counts(shop_app)["events"] == 1
    assert counts(shop_app)["deliveries"] == 2
    assert balance(shop_app, f"shopify:{ANNA}") == 120
    # The member was created from the order's customer, consent logged as Shopify's
    created = member(shop_app, f"shopify:{ANNA}")
    assert (created.email, created.first_name, created.orders_count) == (
        "anna@example.com",
        "Anna",
        1,
    )
    assert consents(shop_app, f"shopify:{ANNA}") == [("email", True, "shopify")]
    with shop_app.database.sessions() as session:
        event = session.scalars(select(Event).where(Event.source == "shopify")).one()
    assert (event.source, event.external_id, event.type) == (
        "shopify",
        "orders/paid:1001",
        "order.completed",
    )
    assert event.payload["total"] == "120.00" and event.payload["currency"] == "PLN"
    assert event.payload["discount_codes"] == ["SPRING10"]
    assert event.payload["browser_ip"] == "203.0.113.10"
    assert len(event.payload["shipping_address_hash"]) == 32
    assert "Przykładowa" not in json.dumps(event.payload)


def test_a_partial_refund_claws_back_in_proportion(shop_app: App, shop_client: TestClient) -> None:
    # Given a paid order of 200 that earned 200 points
    post_shopify(shop_client, "orders/paid", paid(1002, "200.00"))
    process_stored_events(shop_app)
    assert balance(shop_app, f"shopify:{ANNA}") == 200

    # When a quarter is refunded (delivered twice), then the rest
    quarter = refund_payload(501, 1002, "50.00", created_at=START)
    post_shopify(shop_client, "refunds/create", quarter, webhook_id="wh-r1")
    post_shopify(shop_client, "refunds/create", quarter, webhook_id="wh-r1")
    process_stored_events(shop_app)
    after_quarter = balance(shop_app, f"shopify:{ANNA}")
    post_shopify(shop_client, "refunds/create", refund_payload(502, 1002, "150.00"))
    process_stored_events(shop_app)

    # Then a quarter of the points went back, then all of them
    assert after_quarter == 150
    assert balance(shop_app, f"shopify:{ANNA}") == 0


def test_a_failed_refund_transaction_claws_back_nothing(
    shop_app: App, shop_client: TestClient
) -> None:
    post_shopify(shop_client, "orders/paid", paid(1003, "80.00"))
    process_stored_events(shop_app)

    answer = post_shopify(
        shop_client, "refunds/create", refund_payload(503, 1003, "80.00", status="failure")
    )
    process_stored_events(shop_app)

    assert answer.status_code == 200
    assert balance(shop_app, f"shopify:{ANNA}") == 80
    assert counts(shop_app)["events"] == 1


def test_a_cancelled_order_gives_back_its_points(shop_app: App, shop_client: TestClient) -> None:
    post_shopify(shop_client, "orders/paid", paid(1004, "90.00"))
    process_stored_events(shop_app)

    post_shopify(
        shop_client,
        "orders/cancelled",
        paid(1004, "90.00", cancelled_at=START, cancel_reason="customer"),
    )
    process_stored_events(shop_app)

    assert balance(shop_app, f"shopify:{ANNA}") == 0


def test_a_new_customer_arrives_with_consents_and_updates_change_them(
    shop_app: App, shop_client: TestClient
) -> None:
    # Given a customer who subscribed to email and SMS at checkout
    created = anna(phone="+48601234567", email_consent="subscribed", sms_consent="subscribed")

    # When Shopify says so, then later that email marketing was unsubscribed
    first = post_shopify(shop_client, "customers/create", created)
    post_shopify(
        shop_client,
        "customers/update",
        anna(phone="+48601234567", email_consent="unsubscribed", sms_consent="subscribed"),
    )
    process_stored_events(shop_app)

    # Then the member exists with the consent log's rows from Shopify
    assert first.status_code == 200
    assert consents(shop_app, f"shopify:{ANNA}") == [
        ("email", True, "shopify"),
        ("sms", True, "shopify"),
        ("email", False, "shopify"),
    ]
    updated = member(shop_app, f"shopify:{ANNA}")
    assert (updated.email_consent, updated.sms_consent, updated.phone) == (
        False,
        True,
        "+48601234567",
    )


def test_a_late_delivery_of_an_older_customer_update_changes_nothing(
    shop_app: App, shop_client: TestClient
) -> None:
    # Shopify does not promise order: the update made at 11:00 arrives after the one of 12:00
    newer = customer_payload(
        ANNA,
        first_name="Anna-Maria",
        email_consent="unsubscribed",
        updated_at=START + timedelta(hours=2),
    )
    older = customer_payload(
        ANNA, first_name="Ann", email_consent="subscribed", updated_at=START + timedelta(hours=1)
    )
    post_shopify(shop_client, "customers/create", anna())
    post_shopify(shop_client, "customers/update", newer)
    post_shopify(shop_client, "customers/update", older)
    process_stored_events(shop_app)

    kept = member(shop_app, f"shopify:{ANNA}")
    assert (kept.first_name, kept.email_consent) == ("Anna-Maria", False)
    assert consents(shop_app, f"shopify:{ANNA}") == [
        ("email", True, "shopify"),
        ("email", False, "shopify"),
    ]
    assert counts(shop_app)["deliveries"] == 3


def test_a_pending_double_opt_in_changes_no_consent(shop_app: App, shop_client: TestClient) -> None:
    post_shopify(shop_client, "customers/create", anna(email_consent="pending"))
    process_stored_events(shop_app)

    assert consents(shop_app, f"shopify:{ANNA}") == []
    assert member(shop_app, f"shopify:{ANNA}").email_consent is None


def test_unsigned_tampered_and_foreign_deliveries_get_401_and_store_nothing(
    shop_app: App, shop_client: TestClient
) -> None:
    order = paid(1005, "60.00")
    answers = {
        "tampered": post_shopify(shop_client, "orders/paid", order, tamper=True),
        "missing": post_shopify(shop_client, "orders/paid", order, signature=""),
        "garbage": post_shopify(shop_client, "orders/paid", order, signature="not base64 at all"),
        "old secret": post_shopify(shop_client, "orders/paid", order, secret="rotated-away"),
        "other shop": post_shopify(
            shop_client, "orders/paid", order, shop_domain="evil.myshopify.com"
        ),
    }

    assert {name: answer.status_code for name, answer in answers.items()} == dict.fromkeys(
        answers, 401
    )
    assert counts(shop_app) == {
        "deliveries": 0,
        "events": 0,
        "members": 0,
        "consents": 0,
        "ledger": 0,
    }


def test_without_a_configured_secret_every_delivery_is_refused(
    shop_app: App, shop_client: TestClient
) -> None:
    shop_app.settings = shop_app.settings.model_copy(update={"shopify_webhook_secret": None})

    answer = post_shopify(shop_client, "orders/paid", paid(1006, "60.00"))

    assert answer.status_code == 401
    assert counts(shop_app)["deliveries"] == 0


def test_unknown_topics_and_guest_orders_are_answered_and_ignored(
    shop_app: App, shop_client: TestClient
) -> None:
    guest = order_payload(1007, "75.00", customer=None, email="guest@example.com")

    answers = [
        post_shopify(shop_client, "products/update", {"id": 1, "title": "Mug"}),
        post_shopify(shop_client, "orders/paid", guest),
    ]

    assert [answer.status_code for answer in answers] == [200, 200]
    assert counts(shop_app)["deliveries"] == 0 and counts(shop_app)["members"] == 0


def test_customers_redact_erases_the_member(shop_app: App, shop_client: TestClient) -> None:
    # Given a member with an order from Shopify
    post_shopify(shop_client, "orders/paid", paid(1008, "40.00"))
    process_stored_events(shop_app)

    # When the shop asks for the customer's data to be erased
    answer = post_shopify(
        shop_client,
        "customers/redact",
        redact_payload(SHOP_ID, SHOP_DOMAIN, ANNA, orders_to_redact=[1008]),
        webhook_id="wh-redact",
    )
    process_stored_events(shop_app)

    # Then the member's personal data is gone; the points stay for the books
    assert answer.status_code == 200
    erased = member(shop_app, f"shopify:{ANNA}")
    assert erased.erased_at is not None
    assert (erased.email, erased.first_name, erased.last_name) == (None, None, None)
    assert erased.points_balance == 40
    with shop_app.database.sessions() as session:
        delivery = session.scalar(
            select(ProviderEvent).where(ProviderEvent.provider_event_id == "wh-redact")
        )
        assert delivery is not None and delivery.applied_at is not None
        assert "anna" not in json.dumps(delivery.payload)
    # And later webhooks cannot bring the customer back
    post_shopify(shop_client, "customers/update", anna())
    post_shopify(shop_client, "orders/paid", paid(1009, "40.00"))
    process_stored_events(shop_app)
    assert member(shop_app, f"shopify:{ANNA}").email is None
    assert counts(shop_app)["events"] == 1


def test_shop_redact_erases_every_member_of_the_shop(
    shop_app: App, shop_client: TestClient
) -> None:
    post_shopify(shop_client, "customers/create", anna())
    post_shopify(
        shop_client, "customers/create", customer_payload(ANNA + 1, email="ben@example.com")
    )

    answer = post_shopify(shop_client, "shop/redact", shop_redact_payload(SHOP_ID, SHOP_DOMAIN))
    process_stored_events(shop_app)

    assert answer.status_code == 200
    assert member(shop_app, f"shopify:{ANNA}").erased_at is not None
    assert member(shop_app, f"shopify:{ANNA + 1}").erased_at is not None


def test_customers_data_request_writes_the_export(
    shop_app: App, shop_client: TestClient, tmp_path: Path
) -> None:
    # Given a member with an order
    post_shopify(shop_client, "orders/paid", paid(1010, "30.00"))
    process_stored_events(shop_app)

    # When the shop asks for the customer's data
    answer = post_shopify(
        shop_client,
        "customers/data_request",
        data_request_payload(SHOP_ID, SHOP_DOMAIN, ANNA, data_request_id=4242),
    )
    process_stored_events(shop_app)

    # Then the export lies in EXPORT_DIR, readable by its owner only
    assert answer.status_code == 200
    [path] = (tmp_path / "exports").iterdir()
    assert path.name.startswith("shopify-member-") and path.name.endswith("-request-4242.json")
    assert path.stat().st_mode & 0o077 == 0
    document = json.loads(path.read_text())
    assert document["member"]["external_id"] == f"shopify:{ANNA}"
    assert document["member"]["email"] == "anna@example.com"
    assert [entry["delta"] for entry in document["points_ledger"]] == [30]
    shop_events = [event for event in document["events"] if event["source"] == "shopify"]
    assert [event["external_id"] for event in shop_events] == ["orders/paid:1010"]
    assert document["consents"][0]["source"] == "shopify"


def test_a_data_request_for_an_unknown_customer_writes_nothing(
    shop_app: App, shop_client: TestClient, tmp_path: Path
) -> None:
    answer = post_shopify(
        shop_client,
        "customers/data_request",
        data_request_payload(SHOP_ID, SHOP_DOMAIN, 999, email="nobody@example.com"),
    )

    assert answer.status_code == 200
    assert not (tmp_path / "exports").exists()


def test_the_answer_only_keeps_the_delivery_and_the_relay_has_a_worker_apply_it(
    shop_app: App, shop_client: TestClient, clock: FrozenClock
) -> None:
    # When an order is delivered on the embedded default (no Redis: nothing is queued here)
    answer = post_shopify(shop_client, "orders/paid", paid(1011, "70.00"), webhook_id="wh-f")

    # Then the answer kept the delivery, with its body, and nothing else yet
    assert answer.status_code == 200
    assert counts(shop_app) == {
        "deliveries": 1,
        "events": 0,
        "members": 0,
        "consents": 0,
        "ledger": 0,
    }
    with shop_app.database.sessions() as session:
        kept = session.scalars(select(ProviderEvent)).one()
    assert (kept.kind, kept.applied_at, kept.payload["id"]) == ("orders/paid", None, 1011)

    # When the scheduler's relay tick runs once the delivery is old enough
    runtime.configure(shop_app)
    broker = build_broker(shop_app.settings)
    with embedded_worker(broker, threads=1):
        assert (
            relay_shop_deliveries(shop_app) == 0
        )  # too fresh: its queue message may be on its way
        clock.advance(timedelta(seconds=shop_app.settings.event_relay_after_seconds))
        assert relay_shop_deliveries(shop_app) == 1
    process_stored_events(shop_app)

    # Then a worker applied it once: the member, the points, and a record cut to its ids
    assert balance(shop_app, f"shopify:{ANNA}") == 70
    with shop_app.database.sessions() as session:
        applied = session.scalars(select(ProviderEvent)).one()
    assert applied.applied_at is not None
    assert "anna@example.com" not in json.dumps(applied.payload)
    with embedded_worker(broker, threads=1):
        assert relay_shop_deliveries(shop_app) == 0
