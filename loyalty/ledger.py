"""The points ledger: every movement is one row with a unique idempotency key.

Positive entries (earn, bonus, positive adjust) are *lots*: their `remaining`
points are consumed first-expiring-first by redeems, negative adjusts and
expiry. The member's `points_balance` is a cache of the sum of all deltas,
updated in the same transaction, and never goes below zero.

Every entry that moves the balance records a `points.changed` event, and one
that moves the tier a `tier.changed` event, in the same transaction and named
after the entry (`points.changed:<entry id>`): once per change, whichever path
posted it. `take_emitted` hands their ids to the caller, which queues them; the
relay tick picks up any that nobody queued. A type nothing acts on once stored (no
journey listens for it: see `heard_by`) is stored already processed and handed to
nobody, so that no worker spends a transaction on it.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import Select, bindparam, func, nulls_last, or_, select
from sqlalchemy.orm import Session

from loyalty.errors import InsufficientPointsError
from loyalty.event_types import INTERNAL_SOURCE
from loyalty.models import Event, LedgerEntry, Member
from loyalty.states import LedgerKind
from loyalty.tiers import tier_for

__all__ = [
    "Kind",
    "LedgerKind",
    "Posting",
    "apply",
    "default_expiry",
    "expire_due",
    "heard_by",
    "lock_member",
    "next_expiring",
    "redeemable",
    "take_emitted",
    "unheard",
]

#: A movement's kind: a LedgerKind, or its plain value.
Kind = LedgerKind | Literal["earn", "redeem", "expire", "adjust", "bonus"]
_LIFETIME_KINDS = (LedgerKind.EARN, LedgerKind.BONUS, LedgerKind.ADJUST)
#: Where a session keeps the ids of the change events it recorded, until taken.
_EMITTED = "ledger.emitted_events"
#: The program event types something acts on once stored, asked in the transaction that
#: records one (`heard_by`); None: every one is handed on to be processed.
_heard: Callable[[Session], Container[str]] | None = None


def heard_by(decide: Callable[[Session], Container[str]] | None) -> None:
    """Say which program event types (`points.changed`, `tier.changed`, `reward.available`)
    anything acts on, as a function of the transaction that records one: the layer that
    routes events into journeys sets it. The others are stored already processed, as
    processing would leave them (no effect, no journey), and are not handed on."""
    global _heard
    _heard = decide


def unheard(session: Session, event_type: str) -> bool:
    """Whether nothing acts on a stored event of this program type (`heard_by`)."""
    return _heard is not None and event_type not in _heard(session)


@dataclass(frozen=True)
class Posting:
    """The entry that carries the key, and whether this call wrote it."""

    entry: LedgerEntry
    applied: bool


def lock_member(session: Session, member_id: int) -> Member:
    """Load a member and hold its row until commit, serialising ledger work per member."""
    member = session.scalar(
        select(Member)
        .where(Member.id == member_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if member is None:
        raise LookupError(f"member {member_id} does not exist")
    return member


#: The entry posted under a key (built once: the key goes as a parameter).
_POSTED = select(LedgerEntry).where(LedgerEntry.idempotency_key == bindparam("key"))


def apply(
    session: Session,
    member: Member,
    kind: Kind,
    delta: int,
    *,
    key: str,
    reason: str,
    now: datetime,
    thresholds: Mapping[str, int],
    expires_at: datetime | None = None,
    event_id: int | None = None,
    partial: bool = False,
) -> Posting:
    """Post one movement once per `key`.

    Positive deltas open a lot (optionally expiring). Negative deltas consume
    unexpired lots FIFO; more than is redeemable raises InsufficientPointsError,
    unless `partial` is set, in which case only what is available is taken.
    """
    existing = session.scalar(_POSTED, {"key": key})
    if existing is not None:
        return Posting(existing, applied=False)
    kind = LedgerKind(kind)
    if kind in (LedgerKind.EARN, LedgerKind.BONUS) and delta <= 0:
        raise ValueError(f"{kind} needs a positive number of points, got {delta}")
    if kind in (LedgerKind.REDEEM, LedgerKind.EXPIRE) and delta >= 0:
        raise ValueError(f"{kind} needs a negative number of points, got {delta}")
    if delta < 0 and kind != LedgerKind.EXPIRE:
        expire_due(session, member, now=now)
        available = redeemable(session, member, now=now)
        if -delta > available:
            if not partial:
                raise InsufficientPointsError(-delta, available)
            delta = -available
        _consume(session, member, -delta, now=now)
    entry = LedgerEntry(
        member_id=member.id,
        delta=delta,
        kind=kind,
        reason=reason,
        idempotency_key=key,
        expires_at=expires_at if delta > 0 else None,
        remaining=max(delta, 0),
        event_id=event_id,
        created_at=now,
    )
    session.add(entry)
    tier_before = member.tier
    member.points_balance += delta
    if kind in _LIFETIME_KINDS:
        member.lifetime_points = max(0, member.lifetime_points + delta)
        member.tier = tier_for(member.lifetime_points, thresholds)
    member.updated_at = now
    session.flush()
    _emit_changes(session, member, entry, tier_before, thresholds, now)
    return Posting(entry, applied=True)


def _emit_changes(
    session: Session,
    member: Member,
    entry: LedgerEntry,
    tier_before: str,
    thresholds: Mapping[str, int],
    now: datetime,
) -> None:
    """Record `points.changed` (and `tier.changed` when the tier moved) for one posted entry."""
    events: list[tuple[str, dict[str, object]]] = []
    if entry.delta != 0:
        points = {
            "delta": entry.delta,
            "balance": member.points_balance,
            "kind": str(LedgerKind(entry.kind).value),
            "reason": entry.reason,
        }
        events.append(("points.changed", points))
    if member.tier != tier_before:
        up = thresholds.get(member.tier, -1) > thresholds.get(tier_before, -1)
        direction = "up" if up else "down"
        events.append(
            ("tier.changed", {"from": tier_before, "to": member.tier, "direction": direction})
        )
    rows = [
        Event(
            source=INTERNAL_SOURCE,
            external_id=f"{event_type}:{entry.id}",
            type=event_type,
            member_id=member.id,
            payload=payload,
            occurred_at=now,
            received_at=now,
            processed_at=now if unheard(session, event_type) else None,
        )
        for event_type, payload in events
    ]
    session.add_all(rows)
    handed = [row for row in rows if row.processed_at is None]
    if handed:  # their ids, to hand on (the others are written with the next flush)
        session.flush()
        session.info.setdefault(_EMITTED, []).extend(row.id for row in handed)


def take_emitted(session: Session) -> list[int]:
    """The ids of the change events recorded in `session` since the last call, to queue."""
    ids: list[int] = session.info.pop(_EMITTED, [])
    return ids


def _live_lots(member: Member, now: datetime) -> Select[LedgerEntry]:
    return (
        select(LedgerEntry)
        .where(
            LedgerEntry.member_id == member.id,
            LedgerEntry.remaining > 0,
            or_(LedgerEntry.expires_at.is_(None), LedgerEntry.expires_at > now),
        )
        .order_by(nulls_last(LedgerEntry.expires_at.asc()), LedgerEntry.id)
    )


def redeemable(session: Session, member: Member, *, now: datetime) -> int:
    """Points the member can spend now: the unexpired remainder of all lots."""
    lots = _live_lots(member, now).subquery()
    return int(session.scalar(select(func.coalesce(func.sum(lots.c.remaining), 0))) or 0)


def _consume(session: Session, member: Member, points: int, *, now: datetime) -> None:
    for lot in session.scalars(_live_lots(member, now)):
        if points == 0:
            return
        taken = min(points, lot.remaining)
        lot.remaining -= taken
        points -= taken


def expire_due(session: Session, member: Member, *, now: datetime) -> int:
    """Post an `expire` entry for each lot past its expiry; returns the points expired."""
    lots = session.scalars(
        select(LedgerEntry).where(
            LedgerEntry.member_id == member.id,
            LedgerEntry.remaining > 0,
            LedgerEntry.expires_at <= now,
        )
    ).all()
    expired = 0
    for lot in lots:
        assert lot.expires_at is not None
        points, lot.remaining = lot.remaining, 0
        # The balance cache can trail a redeem that raced an expiry; never go below zero.
        points = min(points, member.points_balance)
        if points <= 0:
            continue
        entry = LedgerEntry(
            member_id=member.id,
            delta=-points,
            kind=LedgerKind.EXPIRE,
            reason=f"lot {lot.id} expired",
            idempotency_key=f"expire:{lot.id}",
            expires_at=None,
            remaining=0,
            created_at=lot.expires_at,
        )
        session.add(entry)
        member.points_balance -= points
        member.updated_at = now
        expired += points
        session.flush()
        # Expiry never moves the tier (lifetime points stay), so thresholds are not needed.
        _emit_changes(session, member, entry, member.tier, {}, now)
    session.flush()
    return expired


def next_expiring(
    session: Session, member: Member, *, now: datetime
) -> tuple[int, datetime] | None:
    """The points in the next lots to expire and when, or None."""
    at = session.scalar(
        select(func.min(LedgerEntry.expires_at)).where(
            LedgerEntry.member_id == member.id,
            LedgerEntry.remaining > 0,
            LedgerEntry.expires_at > now,
        )
    )
    if at is None:
        return None
    points = session.scalar(
        select(func.sum(LedgerEntry.remaining)).where(
            LedgerEntry.member_id == member.id,
            LedgerEntry.remaining > 0,
            LedgerEntry.expires_at == at,
        )
    )
    return int(points or 0), at


def default_expiry(now: datetime, days: int) -> datetime | None:
    return now + timedelta(days=days) if days > 0 else None


def history(session: Session, member: Member) -> list[LedgerEntry]:
    """Every ledger entry of `member`, oldest first."""
    return list(
        session.scalars(
            select(LedgerEntry).where(LedgerEntry.member_id == member.id).order_by(LedgerEntry.id)
        )
    )
