"""Redemptions: points turned into a reward exactly once per idempotency key.

`redeem` takes the points (one ledger entry whose key derives from the
idempotency key) and records the redemption in the caller's transaction, on
the locked member row: the same key again returns the same redemption and
posts nothing. The code at the shop comes later (`shops.codes`): `mark_issued`
settles a redemption whose code the shop has, `mark_failed` one the shop
refused for good and gives the points back.

`update_notices` keeps `reward.available` to one event per rise of the balance
to a reward's cost.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from loyalty import ledger
from loyalty.db import Database
from loyalty.errors import InsufficientPointsError, SkippableError
from loyalty.event_types import INTERNAL_SOURCE, EventInput
from loyalty.members import get_member
from loyalty.models import Member, Redemption, RewardNotice
from loyalty.rewards import (
    Catalog,
    FixedAmount,
    Percentage,
    RedemptionState,
    load_catalog,
    tier_allows,
)
from loyalty.settings import Settings
from loyalty.states import LedgerKind
from loyalty.tiers import tier_for

__all__ = [
    "Redeemed",
    "RedemptionError",
    "find_redemption",
    "ledger_key",
    "mark_failed",
    "mark_issued",
    "redeem",
    "redeem_member",
    "redemptions_of",
    "update_notices",
]

CENTS = Decimal("0.01")
#: Longest idempotency key kept as given (longer ones are refused).
MAX_KEY_CHARS = 200


class RedemptionError(SkippableError):
    """This redemption cannot be made as asked: unknown reward, tier, limit, currency, key."""


@dataclass(frozen=True)
class Redeemed:
    redemption: Redemption
    #: False when the idempotency key had already made it.
    created: bool
    #: Events the points taken caused (`points.changed`, from `redeem_member`), to queue.
    caused: tuple[int, ...] = ()


def ledger_key(member_id: int, idempotency_key: str) -> str:
    """The ledger key of a redemption's points: one entry per member and idempotency key."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"redemption:{member_id}:{digest}"


def find_redemption(session: Session, member_id: int, idempotency_key: str) -> Redemption | None:
    return session.scalar(
        select(Redemption).where(
            Redemption.member_id == member_id, Redemption.idempotency_key == idempotency_key
        )
    )


def redeem(
    session: Session,
    member: Member,
    reward_id: str,
    idempotency_key: str,
    *,
    catalog: Catalog,
    thresholds: Mapping[str, int],
    now: datetime,
    currency: str | None = None,
) -> Redeemed:
    """Take the reward's points and record the redemption (pending), once per key.

    Raises RedemptionError (unknown reward, tier too low, limit reached, no
    value in the currency, key used for another reward) or
    InsufficientPointsError; nothing is written then.
    """
    key = idempotency_key.strip()
    if not key or len(key) > MAX_KEY_CHARS or "\x00" in key:
        raise RedemptionError(f"the idempotency key must be 1 to {MAX_KEY_CHARS} characters")
    existing = find_redemption(session, member.id, key)
    if existing is None:
        member = ledger.lock_member(session, member.id)
        # Another request with this key may have committed while this one waited for the lock.
        existing = find_redemption(session, member.id, key)
    if existing is not None:
        if existing.reward_id != reward_id:
            raise RedemptionError(
                f"idempotency key {key!r} already redeemed {existing.reward_id!r}; "
                "use a new key for another reward"
            )
        return Redeemed(existing, created=False)
    reward = catalog.get(reward_id)
    if reward is None:
        known = ", ".join(r.id for r in catalog.rewards) or "none (journeys/rewards.yaml)"
        raise RedemptionError(f"no reward {reward_id!r}; rewards: {known}")
    if not tier_allows(member.tier, reward.min_tier, thresholds):
        raise RedemptionError(
            f"{reward_id} needs tier {reward.min_tier} or higher; the member is {member.tier}"
        )
    if reward.limit_per_member is not None:
        taken = session.scalar(
            select(func.count(Redemption.id)).where(
                Redemption.member_id == member.id,
                Redemption.reward_id == reward_id,
                Redemption.state != RedemptionState.FAILED,
            )
        )
        if (taken or 0) >= reward.limit_per_member:
            raise RedemptionError(
                f"{reward_id} can be taken {reward.limit_per_member} time(s) per member; "
                "this member has reached that"
            )
    value, code_currency = _value(reward, currency)
    posting = ledger.apply(
        session,
        member,
        LedgerKind.REDEEM,
        -reward.cost,
        key=ledger_key(member.id, key),
        reason=f"reward {reward_id}",
        now=now,
        thresholds=thresholds,
    )
    if not posting.applied:  # pragma: no cover - the key is only written with its redemption
        raise InsufficientPointsError(reward.cost, member.points_balance)
    redemption = Redemption(
        member_id=member.id,
        idempotency_key=key,
        reward_id=reward_id,
        kind=reward.kind,
        points=reward.cost,
        state=RedemptionState.PENDING,
        value=value,
        currency=code_currency,
        expires_at=now + reward.validity,
        created_at=now,
        updated_at=now,
    )
    session.add(redemption)
    session.flush()
    update_notices(session, member, catalog, thresholds, now)
    return Redeemed(redemption, created=True)


def redeem_member(
    database: Database,
    external_id: str,
    reward_id: str,
    idempotency_key: str,
    *,
    settings: Settings,
    now: datetime,
    currency: str | None = None,
) -> Redeemed:
    """`redeem` in its own transaction for the member with `external_id`.

    Two requests with one key that race past each other's check meet the unique
    constraint; the loser reads the winner's redemption.
    """
    catalog = load_catalog(settings.journeys_dir, settings.tier_thresholds)
    for attempt in range(3):
        try:
            with database.transaction() as session:
                member = get_member(session, external_id)
                redeemed = redeem(
                    session,
                    member,
                    reward_id,
                    idempotency_key,
                    catalog=catalog,
                    thresholds=settings.tier_thresholds,
                    now=now,
                    currency=currency,
                )
                return replace(redeemed, caused=tuple(ledger.take_emitted(session)))
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _value(
    reward: FixedAmount | Percentage | object, currency: str | None
) -> tuple[Decimal | None, str | None]:
    if isinstance(reward, Percentage):
        return reward.percentage.quantize(CENTS), None
    if not isinstance(reward, FixedAmount):
        return None, None
    if currency is None:
        if len(reward.value) == 1:
            ((only, sole),) = reward.value.items()
            return sole.quantize(CENTS), only
        raise RedemptionError(
            f"{reward.id} has a value in {', '.join(reward.value)}; name the currency"
        )
    amount = reward.value.get(currency.upper())
    if amount is None:
        raise RedemptionError(
            f"{reward.id} has no value in {currency.upper()}; it has {', '.join(reward.value)}"
        )
    return amount.quantize(CENTS), currency.upper()


def mark_issued(
    session: Session,
    redemption_id: int,
    *,
    code: str,
    shop: str,
    shop_code_id: str | None,
    now: datetime,
) -> Redemption | None:
    """pending → issued with its code; None when it was no longer pending (a second run)."""
    changed = session.execute(
        update(Redemption)
        .where(Redemption.id == redemption_id, Redemption.state == RedemptionState.PENDING)
        .values(
            state=RedemptionState.ISSUED,
            code=code,
            shop=shop,
            shop_code_id=shop_code_id,
            error=None,
            issued_at=now,
            updated_at=now,
        )
    )
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return session.get(Redemption, redemption_id, populate_existing=True)


def mark_failed(
    session: Session,
    redemption_id: int,
    reason: str,
    *,
    shop: str,
    catalog: Catalog | None,
    thresholds: Mapping[str, int],
    expiry_days: int,
    now: datetime,
) -> list[EventInput]:
    """pending → failed with the reason, and the points back in one ledger entry.

    The points come back as a fresh lot (the default expiry from now); they do
    not count towards lifetime points or the tier, as they were earned once
    already. Returns the `reward.available` events the higher balance causes.
    """
    redemption = session.get(Redemption, redemption_id)
    if redemption is None:
        return []
    member = ledger.lock_member(session, redemption.member_id)
    changed = session.execute(
        update(Redemption)
        .where(Redemption.id == redemption_id, Redemption.state == RedemptionState.PENDING)
        .values(state=RedemptionState.FAILED, error=reason[:1000], shop=shop, updated_at=now)
    )
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        return []
    posting = ledger.apply(
        session,
        member,
        LedgerKind.ADJUST,
        redemption.points,
        key=f"redemption:{redemption_id}:returned",
        reason=f"reward {redemption.reward_id} not issued: points returned",
        now=now,
        thresholds=thresholds,
        expires_at=ledger.default_expiry(now, expiry_days),
    )
    if posting.applied:
        member.lifetime_points = max(0, member.lifetime_points - redemption.points)
        member.tier = tier_for(member.lifetime_points, thresholds)
    return update_notices(session, member, catalog, thresholds, now) if catalog else []


def redemptions_of(
    session: Session, member_id: int | None = None, limit: int = 100
) -> list[Redemption]:
    """The newest redemptions first, of one member or of all."""
    query = select(Redemption).order_by(Redemption.id.desc()).limit(limit)
    if member_id is not None:
        query = query.where(Redemption.member_id == member_id)
    return list(session.scalars(query))


def update_notices(
    session: Session,
    member: Member,
    catalog: Catalog,
    thresholds: Mapping[str, int],
    now: datetime,
) -> list[EventInput]:
    """`reward.available` for each reward whose cost the balance has just reached.

    Called on the locked member row whenever points change; a reward is
    announced again only after the balance has dropped below its cost and risen
    back. Rewards the member's tier cannot take are not announced.
    """
    if not catalog.rewards:
        return []
    notices = {
        n.reward_id: n
        for n in session.scalars(select(RewardNotice).where(RewardNotice.member_id == member.id))
    }
    events: list[EventInput] = []
    for reward in catalog.rewards:
        reached = member.points_balance >= reward.cost and tier_allows(
            member.tier, reward.min_tier, thresholds
        )
        notice = notices.get(reward.id)
        if notice is None:
            if not reached:
                continue
            notice = RewardNotice(
                member_id=member.id, reward_id=reward.id, reached=False, crossings=0, updated_at=now
            )
            session.add(notice)
        if notice.reached == reached:
            continue
        notice.reached = reached
        notice.updated_at = now
        if reached:
            notice.crossings += 1
            events.append(
                EventInput(
                    type="reward.available",
                    member=member.external_id,
                    id=f"reward.available:{member.id}:{reward.id}:{notice.crossings}",
                    data={
                        "reward": reward.id,
                        "reward_name": reward.display_name(member.locale),
                        "cost": reward.cost,
                        "points": member.points_balance,
                    },
                    source=INTERNAL_SOURCE,
                )
            )
    session.flush()
    return events
