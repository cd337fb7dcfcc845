"""Webhook payloads in Shopify's shapes: orders, refunds, customers and the privacy topics."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

__all__ = [
    "address",
    "customer_payload",
    "data_request_payload",
    "order_payload",
    "redact_payload",
    "refund_payload",
    "shop_redact_payload",
]

Money = str | int | float | Decimal


def _money(value: Money) -> str:
    return f"{Decimal(str(value)):.2f}"


def _now(value: datetime | None = None) -> str:
    return (value or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")


def _money_set(amount: Money, currency: str, presentment: str | None = None) -> dict[str, Any]:
    return {
        "shop_money": {"amount": _money(amount), "currency_code": currency},
        "presentment_money": {"amount": _money(amount), "currency_code": presentment or currency},
    }


def _consent(
    state: str | None, updated_at: datetime | None, *, sms: bool = False
) -> dict[str, Any] | None:
    if state is None:
        return None
    consent: dict[str, Any] = {
        "state": state,
        "opt_in_level": "single_opt_in",
        "consent_updated_at": _now(updated_at) if state != "not_subscribed" else None,
    }
    if sms:
        consent["consent_collected_from"] = "SHOPIFY"
    return consent


def address(
    *,
    first_name: str = "Anna",
    last_name: str = "Nowak",
    address1: str = "ul. Przykładowa 1",
    city: str = "Warszawa",
    zip: str = "00-001",
    country_code: str = "PL",
    phone: str | None = None,
) -> dict[str, Any]:
    """A postal address as orders and customers carry it."""
    return {
        "first_name": first_name,
        "last_name": last_name,
        "name": f"{first_name} {last_name}",
        "address1": address1,
        "address2": None,
        "city": city,
        "zip": zip,
        "province": None,
        "province_code": None,
        "country": {"PL": "Poland", "US": "United States", "DE": "Germany"}.get(
            country_code, country_code
        ),
        "country_code": country_code,
        "company": None,
        "phone": phone,
        "latitude": None,
        "longitude": None,
    }


def customer_payload(
    customer_id: int,
    *,
    email: str | None = "anna@example.com",
    phone: str | None = None,
    first_name: str | None = "Anna",
    last_name: str | None = "Nowak",
    email_consent: str | None = "subscribed",
    sms_consent: str | None = None,
    consent_updated_at: datetime | None = None,
    default_address: dict[str, Any] | None = None,
    currency: str = "PLN",
    tags: str = "",
    created_at: datetime | None = None,
    updated_at: datetime | None = None,
) -> dict[str, Any]:
    """A customers/create or customers/update body.

    Consent states: subscribed, not_subscribed, unsubscribed, pending; None leaves the
    object out (`sms_marketing_consent` is null for a customer without a phone).
    """
    gid = f"gid://shopify/Customer/{customer_id}"
    addresses = [] if default_address is None else [{**default_address, "default": True}]
    return {
        "id": customer_id,
        "email": email,
        "phone": phone,
        "first_name": first_name,
        "last_name": last_name,
        "created_at": _now(created_at),
        "updated_at": _now(updated_at),
        "state": "enabled",
        "note": None,
        "verified_email": email is not None,
        "multipass_identifier": None,
        "tax_exempt": False,
        "tags": tags,
        "currency": currency,
        "tax_exemptions": [],
        "admin_graphql_api_id": gid,
        "default_address": (
            {**default_address, "customer_id": customer_id, "default": True}
            if default_address
            else None
        ),
        "addresses": addresses,
        "email_marketing_consent": _consent(email_consent, consent_updated_at),
        "sms_marketing_consent": (
            _consent(sms_consent, consent_updated_at, sms=True) if phone else None
        ),
    }


def _order_customer(customer: dict[str, Any] | None) -> dict[str, Any] | None:
    if customer is None:
        return None
    keep = (
        "id",
        "email",
        "phone",
        "first_name",
        "last_name",
        "created_at",
        "updated_at",
        "state",
        "verified_email",
        "tags",
        "currency",
        "admin_graphql_api_id",
        "default_address",
        "email_marketing_consent",
        "sms_marketing_consent",
    )
    return {k: customer.get(k) for k in keep}


def order_payload(
    order_id: int,
    total: Money,
    currency: str = "PLN",
    *,
    customer: dict[str, Any] | None = None,
    discount_codes: list[dict[str, Any]] | list[str] | None = None,
    browser_ip: str | None = "203.0.113.10",
    shipping_address: dict[str, Any] | None = None,
    email: str | None = None,
    phone: str | None = None,
    financial_status: str = "paid",
    presentment_currency: str | None = None,
    current_total: Money | None = None,
    cancelled_at: datetime | None = None,
    cancel_reason: str | None = None,
    created_at: datetime | None = None,
    line_items: list[dict[str, Any]] | None = None,
    test: bool = False,
) -> dict[str, Any]:
    """An orders/paid (or orders/cancelled, orders/updated) body.

    `customer` is a customer_payload(...) dict; `discount_codes` are codes or
    `{"code", "amount", "type"}` dicts. Prices are decimal strings as Shopify sends them.
    """
    total_s = _money(total)
    current_s = _money(total if current_total is None else current_total)
    codes = [
        {"code": c, "amount": "0.00", "type": "fixed_amount"} if isinstance(c, str) else c
        for c in (discount_codes or [])
    ]
    discounts = sum((Decimal(str(c.get("amount", "0"))) for c in codes), Decimal(0))
    email = email if email is not None else (customer or {}).get("email")
    phone = phone if phone is not None else (customer or {}).get("phone")
    items = line_items or [
        {
            "id": order_id * 10 + 1,
            "admin_graphql_api_id": f"gid://shopify/LineItem/{order_id * 10 + 1}",
            "name": "Sample product",
            "title": "Sample product",
            "quantity": 1,
            "price": _money(Decimal(total_s) + discounts),
            "sku": "SAMPLE-1",
            "product_id": 632910392,
            "variant_id": 808950810,
            "taxable": True,
            "requires_shipping": True,
            "gift_card": False,
            "total_discount": "0.00",
            "discount_allocations": [],
        }
    ]
    created = _now(created_at)
    number = 1000 + order_id % 100000
    return {
        "id": order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "name": f"#{number}",
        "order_number": number,
        "number": number - 1000,
        "email": email,
        "contact_email": email,
        "phone": phone,
        "created_at": created,
        "updated_at": created,
        "processed_at": created,
        "cancelled_at": _now(cancelled_at) if cancelled_at else None,
        "cancel_reason": cancel_reason,
        "closed_at": None,
        "confirmed": True,
        "test": test,
        "currency": currency,
        "presentment_currency": presentment_currency or currency,
        "total_price": total_s,
        "current_total_price": current_s,
        "subtotal_price": total_s,
        "current_subtotal_price": current_s,
        "total_discounts": _money(discounts),
        "current_total_discounts": _money(discounts),
        "total_tax": "0.00",
        "taxes_included": True,
        "total_price_set": _money_set(total_s, currency, presentment_currency),
        "current_total_price_set": _money_set(current_s, currency, presentment_currency),
        "financial_status": financial_status,
        "fulfillment_status": None,
        "source_name": "web",
        "browser_ip": browser_ip,
        "client_details": {
            "browser_ip": browser_ip,
            "accept_language": "pl-PL",
            "user_agent": "Mozilla/5.0",
            "session_hash": None,
            "browser_width": None,
            "browser_height": None,
        },
        "discount_codes": codes,
        "discount_applications": [
            {
                "type": "discount_code",
                "code": c["code"],
                "value": c.get("amount", "0.00"),
                "value_type": "percentage" if c.get("type") == "percentage" else "fixed_amount",
                "allocation_method": "across",
                "target_selection": "all",
                "target_type": "shipping_line" if c.get("type") == "shipping" else "line_item",
            }
            for c in codes
        ],
        "customer": _order_customer(customer),
        "billing_address": shipping_address,
        "shipping_address": shipping_address,
        "line_items": items,
        "shipping_lines": [],
        "refunds": [],
        "tags": "",
        "note": None,
        "note_attributes": [],
        "payment_gateway_names": ["bogus"],
    }


def refund_payload(
    refund_id: int,
    order_id: int,
    amount: Money,
    currency: str = "PLN",
    *,
    status: str = "success",
    note: str | None = None,
    refund_line_items: list[dict[str, Any]] | None = None,
    created_at: datetime | None = None,
) -> dict[str, Any]:
    """A refunds/create body: one refund transaction of `amount` (a positive string)."""
    created = _now(created_at)
    return {
        "id": refund_id,
        "admin_graphql_api_id": f"gid://shopify/Refund/{refund_id}",
        "order_id": order_id,
        "created_at": created,
        "processed_at": created,
        "note": note,
        "restock": False,
        "user_id": None,
        "total_duties_set": _money_set(0, currency),
        "transactions": [
            {
                "id": refund_id * 10 + 1,
                "admin_graphql_api_id": f"gid://shopify/OrderTransaction/{refund_id * 10 + 1}",
                "order_id": order_id,
                "kind": "refund",
                "gateway": "bogus",
                "status": status,
                "message": "Bogus Gateway: Forced success" if status == "success" else None,
                "created_at": created,
                "processed_at": created,
                "test": True,
                "authorization": None,
                "parent_id": order_id * 10,
                "amount": _money(amount),
                "currency": currency,
                "error_code": None,
                "source_name": "web",
            }
        ],
        "refund_line_items": refund_line_items or [],
        "order_adjustments": [],
        "duties": [],
    }


def redact_payload(
    shop_id: int,
    shop_domain: str,
    customer_id: int,
    *,
    email: str | None = "anna@example.com",
    phone: str | None = None,
    orders_to_redact: list[int] | None = None,
) -> dict[str, Any]:
    """A customers/redact body."""
    return {
        "shop_id": shop_id,
        "shop_domain": shop_domain,
        "customer": {"id": customer_id, "email": email, "phone": phone},
        "orders_to_redact": list(orders_to_redact or []),
    }


def data_request_payload(
    shop_id: int,
    shop_domain: str,
    customer_id: int,
    *,
    email: str | None = "anna@example.com",
    phone: str | None = None,
    orders_requested: list[int] | None = None,
    data_request_id: int = 9999,
) -> dict[str, Any]:
    """A customers/data_request body."""
    return {
        "shop_id": shop_id,
        "shop_domain": shop_domain,
        "orders_requested": list(orders_requested or []),
        "customer": {"id": customer_id, "email": email, "phone": phone},
        "data_request": {"id": data_request_id},
    }


def shop_redact_payload(shop_id: int, shop_domain: str) -> dict[str, Any]:
    """A shop/redact body (48 hours after the app is uninstalled)."""
    return {"shop_id": shop_id, "shop_domain": shop_domain}
