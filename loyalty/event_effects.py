"""What each built-in event type does to the ledger: earn on orders, claw back on refunds, redeem.

Orders earn at their currency's rate (POINTS_PER_CURRENCY_UNIT); after any ledger effect the
member's balance is compared with the rewards catalog (`reward.available`, once per rise).

Each effect runs inside the transaction that marks its event processed, on a
locked member row, with idempotency keys derived from the event: running it
twice changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from loyalty import ledger
from loyalty.errors import RetriableError
from loyalty.event_types import INTERNAL_SOURCE, EventInput, money, order_id_of
from loyalty.models import Event, LedgerEntry, Member
from loyalty.redemptions import update_notices
from loyalty.referrals import on_first_order, void_on_refund
from loyalty.rewards import cached_catalog
from loyalty.settings import Settings
from loyalty.states import LedgerKind

__all__ = ["HANDLERS", "apply_effect"]


def _earn_for_order(
    session: Session, event: Event, member: Member, settings: Settings, now: datetime
) -> list[EventInput]:
    data = event.payload
    total = money(data, "total", required=True) or Decimal(0)
    order_id = order_id_of(data)
    currency = str(data.get("currency") or "").upper()
    rate = settings.points_rate(currency)
    if rate is None:
        # Never earn 1:1 in a currency nobody priced: say so on the event and wait for a rule.
        event.error = (
            f"no points for order {order_id}: POINTS_PER_CURRENCY_UNIT has no rate for "
            f"{currency or 'an order without a currency'} and no default; add e.g. "
            f"{currency or 'EUR'}:1 (or a plain number as the default) and replay the order"
        )
        return []
    points = math.floor(total * rate)
    first_order = member.orders_count == 0
    posting = None
    if points > 0:
        posting = ledger.apply(
            session,
            member,
            LedgerKind.EARN,
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
    if not first_order:
        return []
    return on_first_order(session, member, event, settings=settings, now=now)


def _claw_back_refund(
    session: Session, event: Event, member: Member, settings: Settings, now: datetime
) -> list[EventInput]:
    order_id = order_id_of(event.payload)
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
    order_total = money(order.payload, "total", required=False) if order else None
    refunded = money(event.payload, "total", required=False)
    prefix = f"order:{order_id}:refund:"
    clawed = -int(
        session.scalar(
            select(func.coalesce(func.sum(LedgerEntry.delta), 0)).where(
                LedgerEntry.member_id == member.id, LedgerEntry.idempotency_key.like(prefix + "%")
            )
        )
        or 0
    )
    before = _refunded_before(session, event, member, order_id)
    wanted = earned.delta - clawed
    if refunded is not None and order_total and before.is_finite():
        # Exact arithmetic on the running total of refunds, so that partial refunds adding
        # up to the order claw back exactly what it earned (no point lost to rounding).
        share = min(Fraction(before + refunded) / Fraction(order_total), Fraction(1))
        wanted = min(math.floor(earned.delta * share) - clawed, wanted)
    if wanted > 0:
        posting = ledger.apply(
            session,
            member,
            LedgerKind.ADJUST,
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
    if order_total:  # a refund never takes back more than what is left of its order
        amount = min(amount, max(order_total - before, Decimal(0)))
    fully = refunded is None or not order_total or before + refunded >= order_total
    void_on_refund(session, member, order_id, fully=fully, now=now)
    member.total_spent = max(Decimal(0), member.total_spent - amount)
    member.updated_at = now
    return []


def _refunded_before(session: Session, event: Event, member: Member, order_id: str) -> Decimal:
    """The amounts of this order's refunds processed before `event` (a full refund: no total)."""
    total = Decimal(0)
    for payload in session.scalars(
        select(Event.payload).where(
            Event.member_id == member.id,
            Event.type == "order.refunded",
            Event.processed_at.is_not(None),
            Event.id != event.id,
        )
    ):
        if str(payload.get("order_id")) == order_id:
            amount = money(payload, "total", required=False)
            if amount is None:
                return Decimal("Infinity")
            total += amount
    return total


def _order_pending(session: Session, member: Member, order_id: str) -> bool:
    payloads = session.scalars(
        select(Event.payload).where(
            Event.member_id == member.id,
            Event.type == "order.completed",
            Event.processed_at.is_(None),
            Event.parked_at.is_(None),
        )
    )
    return any(str(payload.get("order_id")) == order_id for payload in payloads)


def _redeem(
    session: Session, event: Event, member: Member, settings: Settings, now: datetime
) -> list[EventInput]:
    if event.source == INTERNAL_SOURCE and event.payload.get("redemption_id") is not None:
        return []  # a catalog redemption: its points were taken when it was made
    points = int(event.payload["points"])
    ledger.apply(
        session,
        member,
        LedgerKind.REDEEM,
        -points,
        key=f"event:{event.id}:redeem",
        reason=str(event.payload.get("reward") or "reward"),
        now=now,
        thresholds=settings.tier_thresholds,
        event_id=event.id,
    )
    return []


HANDLERS: dict[str, Callable[[Session, Event, Member, Settings, datetime], list[EventInput]]] = {
    "order.completed": _earn_for_order,
    "order.refunded": _claw_back_refund,
    "reward.redeemed": _redeem,
}


def apply_effect(
    session: Session, event: Event, member: Member, settings: Settings, now: datetime
) -> list[EventInput]:
    """Apply the built-in effect of the event's type, if it has one; the events it causes."""
    handler = HANDLERS.get(event.type)
    caused = handler(session, event, member, settings, now) if handler else []
    if handler is not None:
        catalog = cached_catalog(settings.journeys_dir, settings.tier_thresholds)
        if catalog is not None:
            caused += update_notices(session, member, catalog, settings.tier_thresholds, now)
    return caused
