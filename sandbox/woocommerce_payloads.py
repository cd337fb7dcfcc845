"""Webhook payloads in WooCommerce's REST v3 shapes: orders and customers."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

__all__ = ["billing_address", "customer_payload", "order_payload"]

Money = str | int | float | Decimal


def _money(value: Money) -> str:
    return f"{Decimal(str(value)):.2f}"


def _date(value: datetime | None) -> str:
    return (value or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def billing_address(
    *,
    email: str | None = "anna@example.com",
    phone: str | None = "",
    first_name: str = "Anna",
    last_name: str = "Nowak",
    address_1: str = "ul. Przykładowa 1",
    city: str = "Warszawa",
    postcode: str = "00-001",
    country: str = "PL",
) -> dict[str, Any]:
    """A billing address as orders and customers carry it (WooCommerce uses "" for none)."""
    return {
        "first_name": first_name,
        "last_name": last_name,
        "company": "",
        "address_1": address_1,
        "address_2": "",
        "city": city,
        "state": "",
        "postcode": postcode,
        "country": country,
        "email": email or "",
        "phone": phone or "",
    }


def _shipping(address: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in address.items() if k != "email"}


def order_payload(
    order_id: int,
    status: str = "processing",
    total: Money = "100.00",
    currency: str = "PLN",
    *,
    billing: dict[str, Any] | None = None,
    refunds: list[dict[str, Any]] | None = None,
    coupon_lines: list[str] | list[dict[str, Any]] | None = None,
    customer_ip_address: str = "203.0.113.10",
    customer_id: int = 0,
    date_created: datetime | None = None,
    date_paid: datetime | None = None,
    line_items: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An order.created / order.updated body.

    Statuses: pending, processing, on-hold, completed, cancelled, refunded, failed.
    `refunds` are `{"id", "total", "reason"}` (a positive total is made negative, as
    WooCommerce lists refunds); `coupon_lines` are codes or `{"code", "discount"}` dicts.
    """
    address = billing if billing is not None else billing_address()
    created = _date(date_created)
    paid = status in ("processing", "completed", "refunded")
    lines = [
        {"code": c, "discount": "0.00"} if isinstance(c, str) else dict(c)
        for c in (coupon_lines or [])
    ]
    coupons: list[dict[str, Any]] = [
        {
            "id": order_id * 10 + i + 1,
            "code": line["code"].lower(),
            "discount": _money(line.get("discount", "0")),
            "discount_tax": "0.00",
            "meta_data": [],
        }
        for i, line in enumerate(lines)
    ]
    discount_total = sum((Decimal(c["discount"]) for c in coupons), Decimal(0))
    listed_refunds = [
        {
            "id": r["id"],
            "reason": r.get("reason", ""),
            "total": "-" + _money(Decimal(str(r["total"])).copy_abs()),
        }
        for r in (refunds or [])
    ]
    items = line_items or [
        {
            "id": order_id * 10,
            "name": "Sample product",
            "product_id": 93,
            "variation_id": 0,
            "quantity": 1,
            "tax_class": "",
            "subtotal": _money(Decimal(_money(total)) + discount_total),
            "subtotal_tax": "0.00",
            "total": _money(total),
            "total_tax": "0.00",
            "taxes": [],
            "meta_data": [],
            "sku": "SAMPLE-1",
            "price": float(Decimal(_money(total)) + discount_total),
        }
    ]
    return {
        "id": order_id,
        "parent_id": 0,
        "number": str(order_id),
        "order_key": f"wc_order_{order_id:013d}",
        "created_via": "checkout",
        "version": "9.4.2",
        "status": status,
        "currency": currency,
        "currency_symbol": {"PLN": "zł", "EUR": "€", "USD": "$", "GBP": "£"}.get(currency, ""),
        "date_created": created,
        "date_created_gmt": created,
        "date_modified": _date(None),
        "date_modified_gmt": _date(None),
        "discount_total": _money(discount_total),
        "discount_tax": "0.00",
        "shipping_total": "0.00",
        "shipping_tax": "0.00",
        "cart_tax": "0.00",
        "total": _money(total),
        "total_tax": "0.00",
        "prices_include_tax": True,
        "customer_id": customer_id,
        "customer_ip_address": customer_ip_address,
        "customer_user_agent": "Mozilla/5.0",
        "customer_note": "",
        "billing": address,
        "shipping": _shipping(address),
        "payment_method": "bacs",
        "payment_method_title": "Direct bank transfer",
        "transaction_id": "",
        "date_paid": _date(date_paid) if paid else None,
        "date_paid_gmt": _date(date_paid) if paid else None,
        "date_completed": created if status == "completed" else None,
        "date_completed_gmt": created if status == "completed" else None,
        "cart_hash": "",
        "meta_data": [],
        "line_items": items,
        "tax_lines": [],
        "shipping_lines": [],
        "fee_lines": [],
        "coupon_lines": coupons,
        "refunds": listed_refunds,
        "payment_url": "",
        "is_editable": status in ("pending", "on-hold"),
        "needs_payment": status == "pending",
        "needs_processing": True,
    }


def customer_payload(
    customer_id: int,
    *,
    email: str = "anna@example.com",
    first_name: str = "Anna",
    last_name: str = "Nowak",
    username: str | None = None,
    billing: dict[str, Any] | None = None,
    is_paying_customer: bool = False,
    date_created: datetime | None = None,
    date_modified: datetime | None = None,
) -> dict[str, Any]:
    """A customer.created / customer.updated body."""
    address = billing or billing_address(email=email, first_name=first_name, last_name=last_name)
    created = _date(date_created)
    modified = _date(date_modified)
    return {
        "id": customer_id,
        "date_created": created,
        "date_created_gmt": created,
        "date_modified": modified,
        "date_modified_gmt": modified,
        "email": email,
        "first_name": first_name,
        "last_name": last_name,
        "role": "customer",
        "username": username or email.split("@", 1)[0],
        "billing": address,
        "shipping": _shipping(address),
        "is_paying_customer": is_paying_customer,
        "avatar_url": "https://secure.gravatar.com/avatar/?s=96&d=mm&r=g",
        "meta_data": [],
    }
