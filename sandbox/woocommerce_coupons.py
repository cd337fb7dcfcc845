"""WooCommerce coupons: the REST v3 argument checks, the plugin's own checks, the store."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["Coupon", "CouponStore", "WcError", "coupon_json"]

DISCOUNT_TYPES = ("percent", "fixed_cart", "fixed_product")
_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}(:?\d{2})?)?$"
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_STRING = ("code", "amount", "description", "minimum_amount", "maximum_amount")
_BOOLEAN = ("individual_use", "free_shipping", "exclude_sale_items")
_INTEGER = ("usage_limit", "usage_limit_per_user", "limit_usage_to_x_items")
_INTEGER_LIST = (
    "product_ids",
    "excluded_product_ids",
    "product_categories",
    "excluded_product_categories",
)
_DATES = ("date_expires", "date_expires_gmt")


class WcError(Exception):
    """An error answered in WordPress's shape: {"code", "message", "data": {"status", …}}."""

    def __init__(self, status: int, code: str, message: str, **data: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.data = data

    def body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "data": {"status": self.status, **self.data},
        }


@dataclass
class Coupon:
    id: int
    values: dict[str, Any]
    created_at: datetime
    modified_at: datetime
    status: str = "publish"
    usage_count: int = 0
    used_by: list[str] = field(default_factory=list)


class CouponStore:
    """Coupons by id; codes are lower-cased and unique among published coupons."""

    def __init__(self) -> None:
        self.coupons: dict[int, Coupon] = {}
        self._next_id = 720

    def by_code(self, code: str) -> Coupon | None:
        wanted = format_code(code)
        for coupon in self.coupons.values():
            if coupon.status == "publish" and coupon.values["code"] == wanted:
                return coupon
        return None

    def get(self, coupon_id: int) -> Coupon:
        coupon = self.coupons.get(coupon_id)
        if coupon is None:
            raise WcError(404, "woocommerce_rest_shop_coupon_invalid_id", "Invalid ID.")
        return coupon

    def create(self, body: dict[str, Any], now: datetime) -> Coupon:
        if "code" not in body:
            raise WcError(
                400, "rest_missing_callback_param", "Missing parameter(s): code", params=["code"]
            )
        values = {**_DEFAULTS, **check_args(body)}
        code = values["code"]
        if not code:
            raise WcError(
                400, "woocommerce_rest_empty_coupon_code", "The coupon code cannot be empty."
            )
        if self.by_code(code) is not None:
            raise WcError(
                400, "woocommerce_rest_coupon_code_already_exists", "The coupon code already exists"
            )
        _check_values(values)
        coupon = Coupon(self._next_id, values, now, now)
        self._next_id += 1
        self.coupons[coupon.id] = coupon
        return coupon

    def update(self, coupon_id: int, body: dict[str, Any], now: datetime) -> Coupon:
        coupon = self.get(coupon_id)
        values = {**coupon.values, **check_args(body)}
        if "code" in body:
            other = self.by_code(values["code"])
            if other is not None and other.id != coupon_id:
                raise WcError(
                    400,
                    "woocommerce_rest_coupon_code_already_exists",
                    "The coupon code already exists",
                )
        _check_values(values)
        coupon.values, coupon.modified_at = values, now
        return coupon

    def list(self, code: str | None, search: str | None) -> list[Coupon]:
        found = [c for c in self.coupons.values() if c.status == "publish"]
        if code is not None:
            found = [c for c in found if c.values["code"] == format_code(code)]
        if search:
            found = [c for c in found if search.lower() in c.values["code"]]
        return sorted(found, key=lambda c: (c.created_at, c.id), reverse=True)


def format_code(code: str) -> str:
    """What WooCommerce's `woocommerce_coupon_code` filters make of a code."""
    return code.strip().lower()


_DEFAULTS: dict[str, Any] = {
    "amount": "0",
    "discount_type": "fixed_cart",
    "description": "",
    "date_expires": None,
    "individual_use": False,
    "product_ids": [],
    "excluded_product_ids": [],
    "usage_limit": None,
    "usage_limit_per_user": None,
    "limit_usage_to_x_items": None,
    "free_shipping": False,
    "product_categories": [],
    "excluded_product_categories": [],
    "exclude_sale_items": False,
    "minimum_amount": "0",
    "maximum_amount": "0",
    "email_restrictions": [],
    "meta_data": [],
}


def check_args(body: dict[str, Any]) -> dict[str, Any]:
    """WordPress's schema checks; unknown keys are ignored as WordPress ignores them."""
    problems: dict[str, tuple[str, str]] = {}
    values: dict[str, Any] = {}
    for key, value in body.items():
        if key in _STRING:
            if not isinstance(value, str):
                problems[key] = ("rest_invalid_type", f"{key} is not of type string.")
            else:
                values[key] = format_code(value) if key == "code" else value
        elif key == "discount_type":
            if value not in DISCOUNT_TYPES:
                message = f"{key} is not one of percent, fixed_cart, and fixed_product."
                problems[key] = ("rest_not_in_enum", message)
            else:
                values[key] = value
        elif key in _BOOLEAN:
            parsed = _boolean(value)
            if parsed is None:
                problems[key] = ("rest_invalid_type", f"{key} is not of type boolean.")
            else:
                values[key] = parsed
        elif key in _INTEGER:
            number = _integer(value)
            if value is not None and number is None:
                problems[key] = ("rest_invalid_type", f"{key} is not of type integer.")
            else:
                values[key] = number
        elif key in _INTEGER_LIST:
            numbers = [_integer(v) for v in value] if isinstance(value, list) else None
            if numbers is None or None in numbers:
                problems[key] = ("rest_invalid_type", f"{key} is not of type array.")
            else:
                values[key] = numbers
        elif key == "email_restrictions":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                problems[key] = ("rest_invalid_type", f"{key}[0] is not of type string.")
            else:
                values[key] = [v.strip().lower() for v in value]
        elif key in _DATES:
            if value is not None and (not isinstance(value, str) or not _DATE_TIME.match(value)):
                problems[key] = ("rest_invalid_date", "Invalid date.")
            else:
                values["date_expires"] = _parse_date(value)
        elif key == "meta_data":
            if not isinstance(value, list):
                problems[key] = ("rest_invalid_type", f"{key} is not of type array.")
            else:
                values[key] = value
    if problems:
        raise WcError(
            400,
            "rest_invalid_param",
            f"Invalid parameter(s): {', '.join(problems)}",
            params={k: m for k, (_, m) in problems.items()},
            details={
                k: {"code": c, "message": m, "data": {"param": k}} for k, (c, m) in problems.items()
            },
        )
    return values


def _check_values(values: dict[str, Any]) -> None:
    """The coupon object's own checks (WC_Data_Exception → 400 with its code)."""
    amount = _decimal(values["amount"])
    if amount < 0 or (values["discount_type"] == "percent" and amount > 100):
        raise WcError(400, "coupon_invalid_amount", "Invalid discount amount")
    values["amount"] = str(amount)
    for key in ("minimum_amount", "maximum_amount"):
        values[key] = str(_decimal(values[key]))
    for email in values["email_restrictions"]:
        if not _EMAIL.match(email.replace("*", "a")):
            raise WcError(400, "coupon_invalid_email_address", "Invalid email address restriction")


def _decimal(value: str) -> Decimal:
    """wc_format_decimal: what is not a number counts as 0."""
    try:
        number = Decimal(value.strip() or "0")
    except InvalidOperation:
        return Decimal(0)
    return number if number.is_finite() else Decimal(0)


def _boolean(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    return None


def _integer(value: object) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return int(number) if number.is_finite() and number == int(number) else None


def _parse_date(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("t", "T"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def wc_date(value: datetime | None) -> str | None:
    """Dates as WooCommerce answers them: local (here UTC) without an offset."""
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def coupon_json(coupon: Coupon, base_url: str) -> dict[str, Any]:
    """The REST v3 representation of a coupon."""
    v = coupon.values
    collection = f"{base_url}/wp-json/wc/v3/coupons"
    return {
        "id": coupon.id,
        "code": v["code"],
        "amount": f"{Decimal(v['amount']):.2f}",
        "status": coupon.status,
        "date_created": wc_date(coupon.created_at),
        "date_created_gmt": wc_date(coupon.created_at),
        "date_modified": wc_date(coupon.modified_at),
        "date_modified_gmt": wc_date(coupon.modified_at),
        "discount_type": v["discount_type"],
        "description": v["description"],
        "date_expires": wc_date(v["date_expires"]),
        "date_expires_gmt": wc_date(v["date_expires"]),
        "usage_count": coupon.usage_count,
        "individual_use": v["individual_use"],
        "product_ids": v["product_ids"],
        "excluded_product_ids": v["excluded_product_ids"],
        "usage_limit": v["usage_limit"],
        "usage_limit_per_user": v["usage_limit_per_user"],
        "limit_usage_to_x_items": v["limit_usage_to_x_items"],
        "free_shipping": v["free_shipping"],
        "product_categories": v["product_categories"],
        "excluded_product_categories": v["excluded_product_categories"],
        "exclude_sale_items": v["exclude_sale_items"],
        "minimum_amount": f"{Decimal(v['minimum_amount'] or '0'):.2f}",
        "maximum_amount": f"{Decimal(v['maximum_amount'] or '0'):.2f}",
        "email_restrictions": v["email_restrictions"],
        "used_by": list(coupon.used_by),
        "meta_data": v["meta_data"],
        "_links": {
            "self": [{"href": f"{collection}/{coupon.id}"}],
            "collection": [{"href": collection}],
        },
    }
