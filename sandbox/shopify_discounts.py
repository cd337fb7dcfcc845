"""The shop's code discounts: validation of the create inputs and the stored codes."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["CodeDiscount", "DiscountStore", "InvalidInput", "UserError", "iso", "parse_datetime"]

#: Shopify refuses codes longer than this.
MAX_CODE_LENGTH = 255
MAX_TITLE_LENGTH = 255
#: Customers a code can be limited to in one request.
MAX_CUSTOMERS = 100
_CUSTOMER_GID = re.compile(r"^gid://shopify/Customer/[1-9][0-9]*$")

UserError = dict[str, Any]
#: Records one user error: (field path under the argument, message, code).
Report = Callable[[list[str], str, str], None]


class InvalidInput(ValueError):
    """A value its GraphQL scalar refuses (Shopify answers these before resolving)."""


def parse_datetime(value: object, name: str = "DateTime") -> datetime:
    """ISO 8601 as Shopify's DateTime accepts it; a value without an offset is UTC."""
    if not isinstance(value, str):
        raise InvalidInput(f"{name}: DateTime must be a string, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{name}: invalid DateTime {value!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class CodeDiscount:
    """One code discount (basic or free shipping) with its single redeem code."""

    node_id: int
    code_id: int
    kind: str  # "basic" or "free_shipping"
    title: str
    code: str
    starts_at: datetime
    ends_at: datetime | None
    customers: tuple[str, ...]  # customer gids; empty = every customer
    usage_limit: int | None
    applies_once_per_customer: bool
    value: dict[
        str, Any
    ]  # {"amount": "10.00", ...} | {"percentage": 0.1} | {"free_shipping": True}
    minimum_subtotal: str | None
    combines_with: dict[str, bool]
    created_at: datetime
    usage_count: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def gid(self) -> str:
        return f"gid://shopify/DiscountCodeNode/{self.node_id}"

    def status(self, now: datetime) -> str:
        if now < self.starts_at:
            return "SCHEDULED"
        if self.ends_at is not None and now >= self.ends_at:
            return "EXPIRED"
        return "ACTIVE"

    def to_dict(self) -> dict[str, Any]:
        """The stored code as tests read it."""
        return {
            "id": self.gid,
            "kind": self.kind,
            "code": self.code,
            "title": self.title,
            "customers": list(self.customers),
            "usage_limit": self.usage_limit,
            "applies_once_per_customer": self.applies_once_per_customer,
            "starts_at": iso(self.starts_at),
            "ends_at": iso(self.ends_at),
            "value": dict(self.value),
            "minimum_subtotal": self.minimum_subtotal,
            "combines_with": dict(self.combines_with),
            "usage_count": self.usage_count,
        }


class DiscountStore:
    """Codes are unique in a shop regardless of case, as on Shopify."""

    def __init__(self) -> None:
        self.discounts: dict[int, CodeDiscount] = {}
        self._next_id = 1_100_000_000_001

    def by_code(self, code: str) -> CodeDiscount | None:
        wanted = code.strip().casefold()
        for discount in self.discounts.values():
            if discount.code.casefold() == wanted:
                return discount
        return None

    def by_gid(self, gid: str) -> CodeDiscount | None:
        prefix = "gid://shopify/DiscountCodeNode/"
        if not gid.startswith(prefix) or not gid[len(prefix) :].isdigit():
            return None
        return self.discounts.get(int(gid[len(prefix) :]))

    def delete(self, gid: str) -> bool:
        found = self.by_gid(gid)
        if found is None:
            return False
        del self.discounts[found.node_id]
        return True

    def create(
        self, kind: str, root: str, data: dict[str, Any], now: datetime
    ) -> tuple[CodeDiscount | None, list[UserError]]:
        """Validate a create input (`root` names the argument) and store it if valid."""
        errors: list[UserError] = []

        def err(path: list[str], message: str, code: str) -> None:
            errors.append({"field": [root, *path], "message": message, "code": code})

        title = (data.get("title") or "").strip()
        if not title:
            err(["title"], "Title can't be blank", "BLANK")
        elif len(title) > MAX_TITLE_LENGTH:
            err(["title"], "Title is too long (maximum is 255 characters)", "TOO_LONG")
        code = (data.get("code") or "").strip()
        if not code:
            err(["code"], "Code can't be blank", "BLANK")
        elif len(code) > MAX_CODE_LENGTH:
            err(["code"], "Code is too long (maximum is 255 characters)", "TOO_LONG")
        elif "\n" in code or "\r" in code:
            err(["code"], "Code cannot contain newline characters.", "INVALID")
        elif self.by_code(code) is not None:
            err(["code"], "Code must be unique. Please try a different code.", "TAKEN")
        starts_at = _optional_datetime(data, "startsAt")
        ends_at = _optional_datetime(data, "endsAt")
        if starts_at is None:
            err(["startsAt"], "Starts at can't be blank", "BLANK")
        elif ends_at is not None and ends_at <= starts_at:
            err(["endsAt"], "Ends at needs to be after starts_at", "INVALID")
        usage_limit = data.get("usageLimit")
        if usage_limit is not None and usage_limit <= 0:
            err(["usageLimit"], "Usage limit must be greater than 0", "GREATER_THAN")
        customers = _customers(data, err)
        value = (
            _customer_gets(data.get("customerGets"), err)
            if kind == "basic"
            else _free_shipping(data, err)
        )
        minimum = _minimum_subtotal(data.get("minimumRequirement"), err)
        if errors:
            return None, errors
        assert starts_at is not None and value is not None
        discount = CodeDiscount(
            node_id=self._next_id,
            code_id=self._next_id + 7,
            kind=kind,
            title=title,
            code=code,
            starts_at=starts_at,
            ends_at=ends_at,
            customers=customers,
            usage_limit=usage_limit,
            applies_once_per_customer=bool(data.get("appliesOncePerCustomer")),
            value=value,
            minimum_subtotal=minimum,
            combines_with={
                k: bool((data.get("combinesWith") or {}).get(k))
                for k in ("productDiscounts", "orderDiscounts", "shippingDiscounts")
            },
            created_at=now,
        )
        self._next_id += 1
        self.discounts[discount.node_id] = discount
        return discount, []


def _optional_datetime(data: dict[str, Any], key: str) -> datetime | None:
    value = data.get(key)
    return None if value is None else parse_datetime(value, key)


def _customers(data: dict[str, Any], err: Report) -> tuple[str, ...]:
    """Customer gids from customerSelection (or the newer context); empty means everyone."""
    selection = data.get("customerSelection")
    name = "customerSelection"
    if selection is None and data.get("context") is not None:
        selection, name = data["context"], "context"
        if selection.get("all") == "ALL":
            selection = {**selection, "all": True}
    if selection is None:
        return ()
    chosen = [k for k in ("all", "customers", "customerSegments") if selection.get(k)]
    if len(chosen) > 1:
        err([name], "Only one of all, customers or customerSegments may be given", "INVALID")
        return ()
    if selection.get("customerSegments"):
        err([name, "customerSegments"], "Customer segments are not emulated", "INVALID")
        return ()
    added = list((selection.get("customers") or {}).get("add") or [])
    if not selection.get("all") and not added:
        err([name], "Customer selection can't be blank", "BLANK")
        return ()
    if len(added) > MAX_CUSTOMERS:
        err([name, "customers", "add"], "Too many customers", "EXCEEDED_MAX")
    for gid in added:
        if not _CUSTOMER_GID.match(gid):
            err([name, "customers", "add"], f"Invalid customer id: {gid}", "INVALID")
            return ()
    return tuple(dict.fromkeys(added))


def _customer_gets(gets: dict[str, Any] | None, err: Report) -> dict[str, Any] | None:
    if gets is None:
        err(["customerGets"], "Customer gets can't be blank", "BLANK")
        return None
    items = gets.get("items")
    if items is None:
        err(["customerGets", "items"], "Items can't be blank", "BLANK")
    elif not items.get("all"):
        err(["customerGets", "items"], "Only items: {all: true} is emulated", "INVALID")
    value = gets.get("value") or {}
    given = [k for k in ("discountAmount", "percentage", "discountOnQuantity") if k in value]
    if not given:
        err(["customerGets", "value"], "Value can't be blank", "BLANK")
        return None
    if len(given) > 1:
        err(["customerGets", "value"], "Only one value type may be given", "TOO_MANY_ARGUMENTS")
        return None
    if given[0] == "percentage":
        percentage = value["percentage"]
        if not 0.0 < percentage <= 1.0:
            path = ["customerGets", "value", "percentage"]
            err(path, "Value must be between 0.0 and 1.0", "VALUE_OUTSIDE_RANGE")
            return None
        return {"percentage": percentage}
    if given[0] == "discountOnQuantity":
        err(["customerGets", "value"], "discountOnQuantity is not emulated", "INVALID")
        return None
    amount = _decimal((value["discountAmount"] or {}).get("amount"))
    if amount is None or amount <= 0:
        path = ["customerGets", "value", "discountAmount", "amount"]
        err(path, "Value must be greater than 0", "GREATER_THAN")
        return None
    each = bool(value["discountAmount"].get("appliesOnEachItem"))
    return {"amount": f"{amount:.2f}", "applies_on_each_item": each}


def _free_shipping(data: dict[str, Any], err: Report) -> dict[str, Any] | None:
    destination = data.get("destination")
    if destination is not None and not destination.get("all"):
        countries = (destination.get("countries") or {}).get("add") or []
        if not countries:
            err(["destination"], "Destination can't be blank", "BLANK")
            return None
    maximum = data.get("maximumShippingPrice")
    price = _decimal(maximum) if maximum is not None else None
    if maximum is not None and (price is None or price < 0):
        err(["maximumShippingPrice"], "Maximum shipping price is invalid", "INVALID")
        return None
    value: dict[str, Any] = {"free_shipping": True}
    if price is not None:
        value["maximum_shipping_price"] = f"{price:.2f}"
    return value


def _minimum_subtotal(requirement: dict[str, Any] | None, err: Report) -> str | None:
    if not requirement or not requirement.get("subtotal"):
        return None
    amount = _decimal(requirement["subtotal"].get("greaterThanOrEqualToSubtotal"))
    if amount is None or amount < 0:
        path = ["minimumRequirement", "subtotal", "greaterThanOrEqualToSubtotal"]
        err(path, "Minimum subtotal must be greater than or equal to 0", "GREATER_THAN_OR_EQUAL_TO")
        return None
    return f"{amount:.2f}"


def _decimal(value: object) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None
