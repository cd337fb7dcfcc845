"""Shop webhooks turned into what the program does: events, member upserts, privacy requests.

Pure functions over the decoded payloads; storing and queueing is the web handler's job.

**Who the member is.** A shop customer's member external id is the shop's own,
email-independent customer id with the shop's name in front: `shopify:{customer.id}`
and `woocommerce:{customer_id}`. Email addresses change and are shared by households;
the customer id never changes, and the prefix keeps the two shops (or an import from
elsewhere) from ever naming the same member. A customer becomes a member on first
sight, from the profile that comes with the order or the customer webhook. Guest
orders (no customer account) earn nothing: there is nobody to credit.

**One business key per effect.** An event's id comes from the shop object it is
about (`orders/paid:{order id}`, `refunds/create:{refund id}`, `refund:{id}` …), not
from the delivery: the delivery id is not signed, so a replayed body under a new
delivery id, or the same order sent by two subscriptions, is still stored once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

__all__ = [
    "SHOPIFY",
    "SHOPIFY_TOPICS",
    "WOOCOMMERCE",
    "WOOCOMMERCE_TOPICS",
    "Privacy",
    "ShopActions",
    "ShopEvent",
    "Upsert",
    "address_hash",
    "shopify_actions",
    "shopify_member",
    "woocommerce_actions",
    "woocommerce_member",
]

SHOPIFY = "shopify"
WOOCOMMERCE = "woocommerce"

#: The Shopify topics this program subscribes to.
SHOPIFY_TOPICS = (
    "orders/paid",
    "orders/cancelled",
    "refunds/create",
    "customers/create",
    "customers/update",
    "customers/redact",
    "customers/data_request",
    "shop/redact",
)
WOOCOMMERCE_TOPICS = ("order.created", "order.updated", "customer.created", "customer.updated")

#: Shopify marketing consent states that grant (the rest revoke; `pending` waits for
#: the customer's double opt-in and changes nothing).
_GRANTED = "subscribed"
_UNDECIDED = "pending"


def shopify_member(customer_id: object) -> str:
    """The member external id of a Shopify customer."""
    return f"{SHOPIFY}:{customer_id}"


def woocommerce_member(customer_id: object) -> str:
    """The member external id of a WooCommerce customer."""
    return f"{WOOCOMMERCE}:{customer_id}"


@dataclass(frozen=True)
class ShopEvent:
    """One of our events, as `EventInput` wants it.

    `member` is None when the shop does not say whose it is (a Shopify refund names
    only its order): it is whoever placed `order_event` (the id of that order's event).
    """

    type: str
    id: str
    data: dict[str, Any]
    member: str | None
    at: datetime | None = None
    #: The customer's profile, to create the member on first sight (None: never create).
    profile: dict[str, Any] | None = None
    order_event: str | None = None


@dataclass(frozen=True)
class Upsert:
    external_id: str
    profile: dict[str, Any]
    #: When the shop last changed the customer (deliveries may come out of order).
    as_of: datetime | None = None


@dataclass(frozen=True)
class Privacy:
    """A privacy request: erase one member, export one member, or erase every member of a shop."""

    kind: Literal["erase", "export", "erase_shop"]
    external_id: str | None = None
    #: Used to find a member that was not created by the shop (an import, say).
    email: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class ShopActions:
    events: tuple[ShopEvent, ...] = ()
    upserts: tuple[Upsert, ...] = ()
    privacy: Privacy | None = None
    #: Why the delivery does nothing (an unknown topic, a guest order…); None when it does.
    ignored: str | None = None
    #: Plain ids kept with the delivery record: never an address, a name or a number.
    ids: dict[str, str] = field(default_factory=dict)


def _ignored(reason: str, **ids: str) -> ShopActions:
    return ShopActions(ignored=reason, ids=ids)


# Shopify


def shopify_actions(topic: str, payload: Mapping[str, Any]) -> ShopActions:
    """What one Shopify webhook asks for."""
    if topic == "orders/paid":
        return _shopify_paid(payload)
    if topic == "orders/cancelled":
        return _shopify_cancelled(payload)
    if topic == "refunds/create":
        return _shopify_refund(payload)
    if topic in ("customers/create", "customers/update"):
        customer_id = _id(payload.get("id"))
        if customer_id is None:
            return _ignored("customer without an id")
        return ShopActions(
            upserts=(
                Upsert(
                    shopify_member(customer_id),
                    shopify_profile(payload),
                    _instant(payload.get("updated_at")),
                ),
            ),
            ids={"customer_id": customer_id},
        )
    if topic in ("customers/redact", "customers/data_request"):
        customer = _object(payload.get("customer"))
        customer_id = _id(customer.get("id"))
        email = _text(customer.get("email"))
        if customer_id is None and email is None:
            return _ignored("privacy request without a customer")
        request = _object(payload.get("data_request"))
        return ShopActions(
            privacy=Privacy(
                "erase" if topic == "customers/redact" else "export",
                external_id=shopify_member(customer_id) if customer_id else None,
                email=email,
                request_id=_id(request.get("id")),
            ),
            ids={"customer_id": customer_id or ""},
        )
    if topic == "shop/redact":
        return ShopActions(
            privacy=Privacy("erase_shop"), ids={"shop_id": _id(payload.get("shop_id")) or ""}
        )
    return _ignored("topic not used")


def shopify_profile(customer: Mapping[str, Any]) -> dict[str, Any]:
    """A Shopify customer as a member profile (only what it says; consent when decided)."""
    profile: dict[str, Any] = {
        key: _text(customer.get(key))
        for key in ("email", "phone", "first_name", "last_name", "locale")
    }
    for channel in ("email", "sms"):
        consent = _object(customer.get(f"{channel}_marketing_consent"))
        state = _text(consent.get("state"))
        if state is not None and state != _UNDECIDED:
            profile[f"{channel}_consent"] = state == _GRANTED
    return {key: value for key, value in profile.items() if value is not None}


def _shopify_paid(order: Mapping[str, Any]) -> ShopActions:
    order_id = _id(order.get("id"))
    if order_id is None:
        return _ignored("order without an id")
    customer = _object(order.get("customer"))
    customer_id = _id(customer.get("id"))
    if customer_id is None:
        return _ignored("guest order", order_id=order_id)
    client = _object(order.get("client_details"))
    codes = [
        code
        for item in _list(order.get("discount_codes"))
        if (code := _text(_object(item).get("code"))) is not None
    ]
    data = _plain(
        {
            "order_id": order_id,
            "order_name": _text(order.get("name")),
            "total": _amount(order.get("current_total_price")) or _amount(order.get("total_price")),
            "currency": _text(order.get("currency")),
            "discount_codes": codes,
            "browser_ip": _text(order.get("browser_ip")) or _text(client.get("browser_ip")),
            "shipping_address_hash": address_hash(_object(order.get("shipping_address"))),
        }
    )
    event = ShopEvent(
        type="order.completed",
        id=f"orders/paid:{order_id}",
        data=data,
        member=shopify_member(customer_id),
        at=_instant(order.get("processed_at")) or _instant(order.get("created_at")),
        profile=shopify_profile(customer),
    )
    return ShopActions(events=(event,), ids={"order_id": order_id, "customer_id": customer_id})


def _shopify_cancelled(order: Mapping[str, Any]) -> ShopActions:
    order_id = _id(order.get("id"))
    customer_id = _id(_object(order.get("customer")).get("id"))
    if order_id is None or customer_id is None:
        return _ignored("cancelled order without an id or a customer")
    # No total: a cancellation takes back whatever the order still holds.
    event = ShopEvent(
        type="order.refunded",
        id=f"orders/cancelled:{order_id}",
        data={"order_id": order_id, "reason": "cancelled"},
        member=shopify_member(customer_id),
        at=_instant(order.get("cancelled_at")),
    )
    return ShopActions(events=(event,), ids={"order_id": order_id, "customer_id": customer_id})


def _shopify_refund(refund: Mapping[str, Any]) -> ShopActions:
    refund_id, order_id = _id(refund.get("id")), _id(refund.get("order_id"))
    if refund_id is None or order_id is None:
        return _ignored("refund without an id or an order")
    amount = Decimal(0)
    for item in _list(refund.get("transactions")):
        transaction = _object(item)
        if transaction.get("kind") == "refund" and transaction.get("status") == "success":
            amount += _decimal(transaction.get("amount")) or Decimal(0)
    if amount <= 0:
        # A restock or a failed refund moved no money: nothing to claw back.
        return _ignored("refund without money refunded", order_id=order_id, refund_id=refund_id)
    event = ShopEvent(
        type="order.refunded",
        id=f"refunds/create:{refund_id}",
        data={"order_id": order_id, "total": str(amount), "refund_id": refund_id},
        member=None,
        at=_instant(refund.get("processed_at")) or _instant(refund.get("created_at")),
        order_event=f"orders/paid:{order_id}",
    )
    return ShopActions(events=(event,), ids={"order_id": order_id, "refund_id": refund_id})


# WooCommerce


def woocommerce_actions(
    topic: str, payload: Mapping[str, Any], *, earn_on_status: str = "completed"
) -> ShopActions:
    """What one WooCommerce webhook asks for; orders earn when their status is `earn_on_status`."""
    if topic in ("order.created", "order.updated"):
        return _woocommerce_order(payload, earn_on_status)
    if topic in ("customer.created", "customer.updated"):
        customer_id = _id(payload.get("id"))
        if customer_id is None or customer_id == "0":
            return _ignored("customer without an id")
        return ShopActions(
            upserts=(
                Upsert(
                    woocommerce_member(customer_id),
                    woocommerce_profile(payload),
                    _gmt(payload.get("date_modified_gmt")),
                ),
            ),
            ids={"customer_id": customer_id},
        )
    return _ignored("topic not used")


def woocommerce_profile(customer: Mapping[str, Any]) -> dict[str, Any]:
    """A WooCommerce customer (or an order's billing details) as a member profile."""
    billing = _object(customer.get("billing"))
    profile = {
        "email": _text(customer.get("email")) or _text(billing.get("email")),
        "phone": _text(billing.get("phone")),
        "first_name": _text(customer.get("first_name")) or _text(billing.get("first_name")),
        "last_name": _text(customer.get("last_name")) or _text(billing.get("last_name")),
    }
    return {key: value for key, value in profile.items() if value is not None}


def _woocommerce_order(order: Mapping[str, Any], earn_on_status: str) -> ShopActions:
    order_id = _id(order.get("id"))
    if order_id is None:
        return _ignored("order without an id")
    customer_id = _id(order.get("customer_id"))
    if customer_id is None or customer_id == "0":
        return _ignored("guest order", order_id=order_id)
    member = woocommerce_member(customer_id)
    status = _text(order.get("status")) or ""
    events: list[ShopEvent] = []
    if status == earn_on_status:
        codes = [
            code
            for item in _list(order.get("coupon_lines"))
            if (code := _text(_object(item).get("code"))) is not None
        ]
        events.append(
            ShopEvent(
                type="order.completed",
                id=f"order:{order_id}:earned",
                data=_plain(
                    {
                        "order_id": order_id,
                        "order_name": _text(order.get("number")),
                        "total": _amount(order.get("total")),
                        "currency": _text(order.get("currency")),
                        "discount_codes": codes,
                        "browser_ip": _text(order.get("customer_ip_address")),
                        "shipping_address_hash": address_hash(_object(order.get("shipping"))),
                    }
                ),
                member=member,
                at=_gmt(order.get("date_completed_gmt")) or _gmt(order.get("date_paid_gmt")),
                profile=woocommerce_profile(order),
            )
        )
    for item in _list(order.get("refunds")):
        refund = _object(item)
        refund_id = _id(refund.get("id"))
        amount = _decimal(refund.get("total"))
        if refund_id is None or amount is None or amount == 0:
            continue
        events.append(
            ShopEvent(
                type="order.refunded",
                id=f"refund:{refund_id}",
                data={"order_id": order_id, "total": str(abs(amount)), "refund_id": refund_id},
                member=member,
            )
        )
    if status == "refunded":
        # Whatever the refunds above left: a refunded order keeps no points. (An order
        # that never earned here takes nothing back; the event says so.)
        events.append(
            ShopEvent(
                type="order.refunded",
                id=f"order:{order_id}:refunded",
                data={"order_id": order_id, "reason": "refunded"},
                member=member,
            )
        )
    if not events:
        return _ignored(f"order status {status or 'missing'}", order_id=order_id)
    return ShopActions(events=tuple(events), ids={"order_id": order_id, "customer_id": customer_id})


# Values


def address_hash(address: Mapping[str, Any]) -> str | None:
    """A digest of a shipping address for referral checks (same address, different names).

    Case, spacing and punctuation do not count; names and phone numbers are not part of it.
    Shopify names the street lines `address1`/`address2`, WooCommerce `address_1`/`address_2`.
    """
    keys: tuple[tuple[str, ...], ...] = (
        ("address1", "address_1"),
        ("address2", "address_2"),
        ("city",),
        ("zip",),
        ("postcode",),
        ("country_code",),
        ("country",),
    )
    parts = [
        re.sub(r"[\W_]+", "", " ".join(str(address.get(k) or "") for k in names).casefold())
        for names in keys
    ]
    if not any(parts):
        return None
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value not in (None, [], "")}


def _object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _id(value: Any) -> str | None:
    """A shop id (a number, or a string of one); booleans and empty values are none."""
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip()
    return text if text and len(text) <= 64 and text.isascii() and text.isalnum() else None


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _amount(value: Any) -> str | None:
    amount = _decimal(value)
    return None if amount is None else str(amount)


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at.astimezone(UTC) if at.tzinfo is not None else None


def _gmt(value: Any) -> datetime | None:
    """WooCommerce's `*_gmt` dates: UTC without an offset."""
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
