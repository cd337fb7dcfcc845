"""Events: stored once per (source, id), then processed once.

Recording validates the member, the type and the payload and stores the row;
nothing is stored when any of them is wrong. Processing applies the built-in
effect of the type (points for orders, clawbacks for refunds) in one
transaction and stamps `processed_at`, so running it twice changes nothing.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from loyalty import ledger
from loyalty.db import Database
from loyalty.errors import (
    InvalidEventError,
    RetriableError,
    SkippableError,
    UnknownEventTypeError,
    UnknownMemberError,
)
from loyalty.models import Event, LedgerEntry, Member
from loyalty.referrals import complete_referral
from loyalty.settings import Settings

__all__ = [
    "BUILTIN_TYPES",
    "EventInput",
    "handle_event",
    "known_types",
    "process_event",
    "record_event",
]

log = logging.getLogger(__name__)

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

    @classmethod
    def from_json(cls, value: Any, *, source: str) -> EventInput:
        """Build from one decoded JSON line; raises InvalidEventError naming the field."""
        if not isinstance(value, dict):
            raise InvalidEventError("expected a JSON object with type, member, id, at, data")
        unknown = set(value) - {"type", "member", "id", "at", "data", "source"}
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


def _money(data: dict[str, Any], name: str, *, required: bool) -> Decimal | None:
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
    return amount


def _order_id(data: dict[str, Any]) -> str:
    value = data.get("order_id")
    if value is None or str(value).strip() == "":
        raise InvalidEventError("data.order_id is required")
    return str(value)


def _validate_order(data: dict[str, Any]) -> None:
    _order_id(data)
    _money(data, "total", required=True)
    currency = data.get("currency")
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isalpha()):
        raise InvalidEventError(
            f"data.currency must be an ISO 4217 code such as EUR (got {currency!r})"
        )


def _validate_refund(data: dict[str, Any]) -> None:
    _order_id(data)
    _money(data, "total", required=False)


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
}
BUILTIN_TYPES = tuple(_VALIDATORS)


def known_types(settings: Settings) -> set[str]:
    return {*BUILTIN_TYPES, *settings.event_types}


def record_event(
    session: Session,
    event: EventInput,
    *,
    settings: Settings,
    now: datetime,
) -> tuple[Event, bool]:
    """Store the event once per (source, id); returns (row, created)."""
    types = known_types(settings)
    if event.type not in types:
        raise UnknownEventTypeError(event.type, list(types))
    member_id = session.scalar(select(Member.id).where(Member.external_id == event.member))
    if member_id is None:
        raise UnknownMemberError(event.member)
    data = event.data or {}
    validate = _VALIDATORS.get(event.type)
    if validate is not None:
        validate(data)
    external_id = event.id or str(uuid.uuid4())
    existing = session.scalar(
        select(Event).where(Event.source == event.source, Event.external_id == external_id)
    )
    if existing is not None:
        return existing, False
    row = Event(
        source=event.source,
        external_id=external_id,
        type=event.type,
        member_id=member_id,
        payload=data,
        occurred_at=event.at or now,
        received_at=now,
    )
    session.add(row)
    session.flush()
    return row, True


def process_event(
    session: Session, event_id: int, *, settings: Settings, now: datetime
) -> list[int]:
    """Apply the event's effect once. Returns the ids of events it caused."""
    event = session.get(Event, event_id, with_for_update=True)
    if event is None or event.processed_at is not None:
        return []
    member = ledger.lock_member(session, event.member_id)
    _wait_for_earlier(session, event, now)
    handler = _HANDLERS.get(event.type)
    caused = handler(session, event, member, settings, now) if handler else []
    event.processed_at = now
    return caused


#: How long a member's later events wait for an earlier one still in flight.
ORDERING_WINDOW = timedelta(seconds=60)


def _wait_for_earlier(session: Session, event: Event, now: datetime) -> None:
    """Keep one member's events in the order they arrived (a redeem after its order, say).

    An earlier event that is stuck longer than the window (dead-lettered, say)
    no longer holds the later ones back.
    """
    earlier = session.scalar(
        select(Event.id)
        .where(
            Event.member_id == event.member_id,
            Event.id < event.id,
            Event.processed_at.is_(None),
            Event.received_at > now - ORDERING_WINDOW,
        )
        .limit(1)
    )
    if earlier is not None:
        raise RetriableError(f"event {earlier} of the same member goes first", retry_after=0.2)


def _earn_for_order(
    session: Session, event: Event, member: Member, settings: Settings, now: datetime
) -> list[int]:
    data = event.payload
    total = _money(data, "total", required=True) or Decimal(0)
    order_id = _order_id(data)
    points = math.floor(total * settings.points_per_currency_unit)
    first_order = member.orders_count == 0
    posting = None
    if points > 0:
        posting = ledger.apply(
            session,
            member,
            "earn",
            points,
            key=f"order:{order_id}:earn",
            reason=f"order {order_id}",
            now=now,
            thresholds=settings.tier_thresholds,
            expires_at=ledger.default_expiry(event.occurred_at, settings.points_expiry_days),
            event_id=event.id,
        )
    if posting is not None and not posting.applied:
        return []  # the same order arrived under another event id
    member.orders_count += 1
    member.total_spent += total
    if member.last_order_at is None or event.occurred_at > member.last_order_at:
        member.last_order_at = event.occurred_at
    member.updated_at = now
    referral = complete_referral(session, member, at=now) if first_order else None
    if referral is None:
        return []
    referrer = session.get(Member, referral.referrer_id)
    assert referrer is not None
    caused, _ = record_event(
        session,
        EventInput(
            type="referral.completed",
            member=referrer.external_id,
            id=f"referral:{referral.id}",
            data={
                "referee": member.external_id,
                "referee_first_name": member.first_name,
                "order_id": order_id,
                "fraud_verdict": referral.fraud_verdict or "clean",
            },
            source=INTERNAL_SOURCE,
        ),
        settings=settings,
        now=now,
    )
    return [caused.id]


def _claw_back_refund(
    session: Session, event: Event, member: Member, settings: Settings, now: datetime
) -> list[int]:
    order_id = _order_id(event.payload)
    earned = session.scalar(
        select(LedgerEntry).where(LedgerEntry.idempotency_key == f"order:{order_id}:earn")
    )
    if earned is None and _order_pending(session, member, order_id):
        # The refund overtook its order on another worker: try again once it has landed.
        raise RetriableError(f"order {order_id} is not processed yet", retry_after=1.0)
    if earned is None or earned.member_id != member.id:
        event.error = f"no points were earned for order {order_id}; nothing to claw back"
        return []
    order = session.get(Event, earned.event_id) if earned.event_id else None
    order_total = _money(order.payload, "total", required=False) if order else None
    refunded = _money(event.payload, "total", required=False)
    prefix = f"order:{order_id}:refund:"
    clawed = -int(
        session.scalar(
            select(func.coalesce(func.sum(LedgerEntry.delta), 0)).where(
                LedgerEntry.member_id == member.id, LedgerEntry.idempotency_key.like(prefix + "%")
            )
        )
        or 0
    )
    wanted = earned.delta
    if refunded is not None and order_total:
        wanted = math.floor(earned.delta * min(refunded / order_total, Decimal(1)))
    wanted = min(wanted, earned.delta - clawed)
    if wanted > 0:
        posting = ledger.apply(
            session,
            member,
            "adjust",
            -wanted,
            key=prefix + event.external_id,
            reason=f"refund of order {order_id}",
            now=now,
            thresholds=settings.tier_thresholds,
            event_id=event.id,
            partial=True,
        )
        if -posting.entry.delta < wanted:
            event.error = (
                f"only {-posting.entry.delta} of {wanted} points could be clawed back: "
                "the rest was already spent"
            )
    amount = refunded if refunded is not None else order_total or Decimal(0)
    member.total_spent = max(Decimal(0), member.total_spent - amount)
    member.updated_at = now
    return []


def _order_pending(session: Session, member: Member, order_id: str) -> bool:
    payloads = session.scalars(
        select(Event.payload).where(
            Event.member_id == member.id,
            Event.type == "order.completed",
            Event.processed_at.is_(None),
        )
    )
    return any(str(payload.get("order_id")) == order_id for payload in payloads)


def _redeem(
    session: Session, event: Event, member: Member, settings: Settings, now: datetime
) -> list[int]:
    points = int(event.payload["points"])
    ledger.apply(
        session,
        member,
        "redeem",
        -points,
        key=f"event:{event.id}:redeem",
        reason=str(event.payload.get("reward") or "reward"),
        now=now,
        thresholds=settings.tier_thresholds,
        event_id=event.id,
    )
    return []


_HANDLERS: dict[str, Callable[[Session, Event, Member, Settings, datetime], list[int]]] = {
    "order.completed": _earn_for_order,
    "order.refunded": _claw_back_refund,
    "reward.redeemed": _redeem,
}


def handle_event(
    database: Database,
    event_id: int,
    *,
    settings: Settings,
    now: datetime,
    also: Callable[[Session, Event], list[int]] | None = None,
) -> tuple[list[int], list[int]]:
    """Process one event in its own transaction; `also` runs in it once the effect is applied.

    Returns (ids of events it caused, what `also` returned). A skippable
    failure (a redeem beyond the balance, say) is recorded on the event, which
    then counts as processed: retrying cannot change the outcome.
    """
    try:
        with database.transaction() as session:
            event = session.get(Event, event_id)
            already = event is None or event.processed_at is not None
            caused = process_event(session, event_id, settings=settings, now=now)
            extra = also(session, event) if also is not None and event and not already else []
            return caused, extra
    except SkippableError as exc:
        with database.transaction() as session:
            event = session.get(Event, event_id, with_for_update=True)
            if event is not None and event.processed_at is None:
                event.processed_at = now
                event.error = str(exc)
        log.warning("event.rejected", extra={"event_id": event_id, "reason": str(exc)})
        return [], []
