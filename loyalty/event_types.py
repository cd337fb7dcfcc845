"""Event types: the built-in ones and their payload rules, and the input form of an event.

Validation happens before anything is stored: an unknown type or a bad payload
stores nothing and says which field is wrong.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from loyalty.errors import InvalidEventError, UnknownEventTypeError
from loyalty.settings import Settings

__all__ = [
    "BUILTIN_TYPES",
    "INTERNAL_SOURCE",
    "PAYLOAD_KEYS",
    "PROGRAM_TYPES",
    "EventInput",
    "PayloadKeys",
    "check_envelope",
    "check_payload",
    "check_type",
    "known_types",
    "money",
    "order_id_of",
    "parse_instant",
    "payload_keys",
]

#: Source given to events the program emits itself.
INTERNAL_SOURCE = "loyalty"


@dataclass(frozen=True)
class EventInput:
    type: str
    member: str
    id: str | None = None
    at: datetime | None = None
    data: dict[str, Any] | None = None
    source: str = "shop"
    #: The member's profile (import columns: email, phone, names, consents…): an unknown
    #: member is created from it (`loyalty.member_upsert`); a known one is left as is.
    profile: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, value: Any, *, source: str) -> EventInput:
        """Build from one decoded JSON line; raises InvalidEventError naming the field."""
        if not isinstance(value, dict):
            raise InvalidEventError(
                "expected a JSON object with type, member, id, at, data, profile"
            )
        unknown = set(value) - {"type", "member", "id", "at", "data", "source", "profile"}
        if unknown:
            raise InvalidEventError(f"unknown field(s) {', '.join(sorted(unknown))}")
        for name in ("type", "member"):
            if not isinstance(value.get(name), str) or not value[name]:
                raise InvalidEventError(f"{name!r} is required and must be a string")
        if value.get("id") is not None and not isinstance(value["id"], (str, int)):
            raise InvalidEventError("'id' must be a string")
        data = value.get("data", {})
        if not isinstance(data, dict):
            raise InvalidEventError("'data' must be a JSON object")
        profile = value.get("profile")
        if profile is not None and not isinstance(profile, dict):
            raise InvalidEventError("'profile' must be a JSON object")
        at = None
        if value.get("at") is not None:
            at = parse_instant(value["at"])
        return cls(
            type=value["type"],
            member=value["member"],
            id=None if value.get("id") is None else str(value["id"]),
            at=at,
            data=data,
            source=str(value.get("source") or source),
            profile=profile,
        )


def parse_instant(value: Any) -> datetime:
    """An ISO 8601 instant with an offset (or Z)."""
    if not isinstance(value, str):
        raise InvalidEventError("'at' must be an ISO 8601 string such as 2026-03-01T10:00:00Z")
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEventError(
            f"'at' is not ISO 8601 (got {value!r}); use e.g. 2026-03-01T10:00:00Z"
        ) from None
    if at.tzinfo is None:
        raise InvalidEventError(f"'at' needs an offset or Z (got {value!r})")
    return at


#: Limits that every stored event keeps, so that no value accepted here fails later.
MAX_ID_CHARS = 255
MAX_NAME_CHARS = 64
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_PAYLOAD_DEPTH = 16
MAX_AMOUNT = Decimal("999999999999.99")
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _text(name: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidEventError(f"{name} is longer than {limit} characters")
    if "\x00" in value:
        raise InvalidEventError(f"{name} contains a NUL character")


def _payload(value: Any, where: str, depth: int = 0) -> None:
    if depth > MAX_PAYLOAD_DEPTH:
        raise InvalidEventError(f"{where} nests deeper than {MAX_PAYLOAD_DEPTH} levels")
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidEventError(f"{where} contains a NUL character")
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidEventError(f"{where} must be a finite number")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or "\x00" in key:
                raise InvalidEventError(f"{where} has a key that is not plain text")
            _payload(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _payload(item, f"{where}[{index}]", depth + 1)
    elif value is not None and not isinstance(value, (bool, int, float)):
        raise InvalidEventError(f"{where} must be JSON data")


def check_envelope(event: EventInput) -> None:
    """Refuse ids, names, times and payloads that the database or later steps cannot hold."""
    _text("'type'", event.type, MAX_NAME_CHARS)
    _text("'source'", event.source, MAX_NAME_CHARS)
    _text("'member'", event.member, MAX_ID_CHARS)
    if event.id is not None:
        _text("'id'", event.id, MAX_ID_CHARS)
    if event.at is not None and not EARLIEST <= event.at < LATEST:
        raise InvalidEventError(
            f"'at' must lie between {EARLIEST.year} and {LATEST.year} (got {event.at.isoformat()})"
        )
    data = event.data or {}
    _payload(data, "data")
    try:
        size = len(json.dumps(data, ensure_ascii=False, allow_nan=False).encode("utf-8"))
    except (TypeError, ValueError) as exc:
        raise InvalidEventError(f"data is not JSON data ({exc})") from None
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidEventError(f"data is larger than {MAX_PAYLOAD_BYTES // 1024} KiB")
    if event.profile is not None:
        _payload(event.profile, "profile")


def money(data: dict[str, Any], name: str, *, required: bool) -> Decimal | None:
    if name not in data or data[name] is None:
        if required:
            raise InvalidEventError(f"data.{name} is required")
        return None
    try:
        amount = Decimal(str(data[name]))
    except InvalidOperation:
        raise InvalidEventError(f"data.{name} must be a number (got {data[name]!r})") from None
    if not amount.is_finite() or amount < 0:
        raise InvalidEventError(f"data.{name} must be zero or more (got {data[name]!r})")
    if amount > MAX_AMOUNT:
        raise InvalidEventError(f"data.{name} must be at most {MAX_AMOUNT} (got {data[name]!r})")
    exponent = amount.as_tuple().exponent
    return (
        amount.quantize(Decimal("0.01")) if isinstance(exponent, int) and exponent < -2 else amount
    )


def order_id_of(data: dict[str, Any]) -> str:
    value = data.get("order_id")
    if value is None or str(value).strip() == "":
        raise InvalidEventError("data.order_id is required")
    return str(value)


def _validate_order(data: dict[str, Any]) -> None:
    order_id_of(data)
    money(data, "total", required=True)
    currency = data.get("currency")
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isalpha()):
        raise InvalidEventError(
            f"data.currency must be an ISO 4217 code such as EUR (got {currency!r})"
        )


def _validate_refund(data: dict[str, Any]) -> None:
    order_id_of(data)
    money(data, "total", required=False)


def _validate_redeem(data: dict[str, Any]) -> None:
    points = data.get("points")
    if not isinstance(points, int) or isinstance(points, bool) or points <= 0:
        raise InvalidEventError(f"data.points must be a positive whole number (got {points!r})")


def _validate_survey_answer(data: dict[str, Any]) -> None:
    scales = {"nps": range(0, 11), "csat": range(1, 6)}
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in scales:
        raise InvalidEventError(f"data.kind must be nps or csat (got {kind!r})")
    score = data.get("score")
    scale = scales[kind]
    if not isinstance(score, int) or isinstance(score, bool) or score not in scale:
        raise InvalidEventError(
            f"data.score must be a whole number from {scale[0]} to {scale[-1]} (got {score!r})"
        )


_VALIDATORS: dict[str, Callable[[dict[str, Any]], None]] = {
    "order.completed": _validate_order,
    "order.refunded": _validate_refund,
    "reward.redeemed": _validate_redeem,
    "referral.completed": lambda data: None,
    "member.enrolled": lambda data: None,
    "survey.answered": _validate_survey_answer,
    "reward.available": lambda data: None,
    "points.changed": lambda data: None,
    "tier.changed": lambda data: None,
}
BUILTIN_TYPES = tuple(_VALIDATORS)
#: Built-in types the program emits itself (source INTERNAL_SOURCE) as a consequence of
#: other work: rewards the balance reached, and every move of the balance and the tier.
PROGRAM_TYPES = ("reward.available", "points.changed", "tier.changed")


@dataclass(frozen=True)
class PayloadKeys:
    """The data keys of an event type: ``required`` ones are always there, ``optional`` may be."""

    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()

    @property
    def all(self) -> tuple[str, ...]:
        return (*self.required, *self.optional)


#: The payload of each built-in type, as the shops, the API and the program send it.
#: Custom types (EVENT_TYPES) declare none: their data is whatever the sender puts in.
PAYLOAD_KEYS: dict[str, PayloadKeys] = {
    "order.completed": PayloadKeys(
        ("order_id", "total", "currency"),
        ("order_name", "items", "discount_codes", "browser_ip", "shipping_address_hash"),
    ),
    "order.refunded": PayloadKeys(("order_id",), ("total", "reason", "refund_id")),
    "reward.redeemed": PayloadKeys(
        ("points",),
        ("redemption_id", "reward", "code", "kind", "value", "currency", "expires_at"),
    ),
    "referral.completed": PayloadKeys(
        (), ("referee", "referee_first_name", "order_id", "fraud_verdict")
    ),
    "member.enrolled": PayloadKeys(),
    "survey.answered": PayloadKeys(("kind", "score"), ("survey_id", "category")),
    "reward.available": PayloadKeys((), ("reward", "reward_name", "cost", "points")),
    # One per ledger entry: delta and the balance after it; kind is earn, redeem, expire,
    # adjust or bonus; reason is the entry's (an order, a refund, a journey, by hand).
    "points.changed": PayloadKeys(("delta", "balance", "kind", "reason")),
    # The tier moved with lifetime points; direction is up or down (refunds, adjustments).
    "tier.changed": PayloadKeys(("from", "to", "direction")),
}


def payload_keys(event_type: str) -> PayloadKeys | None:
    """The payload keys of a built-in type; None for a custom type (any keys)."""
    return PAYLOAD_KEYS.get(event_type)


def known_types(settings: Settings) -> set[str]:
    return {*BUILTIN_TYPES, *settings.event_types}


def check_type(event_type: str, settings: Settings) -> None:
    """Refuse a type that is neither built in nor declared in EVENT_TYPES."""
    types = known_types(settings)
    if event_type not in types:
        raise UnknownEventTypeError(event_type, list(types))


def check_payload(event_type: str, data: dict[str, Any]) -> None:
    """Refuse a payload the event's type does not accept (custom types accept any)."""
    validate = _VALIDATORS.get(event_type)
    if validate is not None:
        validate(data)
