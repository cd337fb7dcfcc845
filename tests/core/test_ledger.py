"""The points ledger, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from loyalty import ledger
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.errors import InsufficientPointsError
from loyalty.models import LedgerEntry, Member
from tests.factories import make_member

THRESHOLDS = {"bronze": 0, "silver": 1000, "gold": 5000}


def post(app: App, member_id: int, kind: ledger.Kind, delta: int, key: str, **kw: object) -> bool:
    with app.database.transaction() as session:
        member = ledger.lock_member(session, member_id)
        posting = ledger.apply(
            session,
            member,
            kind,
            delta,
            key=key,
            reason=kind,
            now=app.clock.now(),
            thresholds=THRESHOLDS,
            **kw,  # type: ignore[arg-type]
        )
        return posting.applied


def balance(app: App, member_id: int) -> tuple[int, int]:
    """(cached balance, sum of ledger deltas)."""
    with app.database.sessions() as session:
        cached = session.scalar(select(Member.points_balance).where(Member.id == member_id))
        summed = session.scalar(
            select(func.coalesce(func.sum(LedgerEntry.delta), 0)).where(
                LedgerEntry.member_id == member_id
            )
        )
    return int(cached or 0), int(summed or 0)


def test_same_key_applies_once(app: App) -> None:
    member = make_member(app)
    assert post(app, member.id, "earn", 100, "order:1:earn") is True
    assert post(app, member.id, "earn", 100, "order:1:earn") is False
    assert balance(app, member.id) == (100, 100)


def test_redeem_beyond_balance_is_refused_and_changes_nothing(app: App) -> None:
    member = make_member(app)
    post(app, member.id, "earn", 50, "e1")
    with pytest.raises(InsufficientPointsError, match="cannot take 80 points: the member has 50"):
        post(app, member.id, "redeem", -80, "r1")
    assert balance(app, member.id) == (50, 50)


def test_lots_are_consumed_first_expiring_first(app: App, clock: FrozenClock) -> None:
    member = make_member(app)
    now = clock.now()
    post(app, member.id, "earn", 100, "late", expires_at=now + timedelta(days=300))
    post(app, member.id, "earn", 100, "soon", expires_at=now + timedelta(days=10))
    post(app, member.id, "redeem", -150, "r1")
    clock.advance(timedelta(days=11))
    with app.database.transaction() as session:
        expired = ledger.expire_due(
            session, ledger.lock_member(session, member.id), now=clock.now()
        )
    assert expired == 0  # the soon lot was spent first
    assert balance(app, member.id) == (50, 50)


def test_expired_points_cannot_be_redeemed(app: App, clock: FrozenClock) -> None:
    member = make_member(app)
    post(app, member.id, "earn", 100, "e1", expires_at=clock.now() + timedelta(days=1))
    post(app, member.id, "bonus", 20, "b1")
    clock.advance(timedelta(days=2))
    with pytest.raises(InsufficientPointsError, match="has 20 redeemable"):
        post(app, member.id, "redeem", -21, "r1")
    post(app, member.id, "redeem", -20, "r2")
    with app.database.sessions() as session:
        kinds = session.scalars(
            select(LedgerEntry.kind)
            .where(LedgerEntry.member_id == member.id)
            .order_by(LedgerEntry.id)
        ).all()
    assert kinds == ["earn", "bonus", "expire", "redeem"]
    assert balance(app, member.id) == (0, 0)


def test_tier_follows_lifetime_points_not_balance(app: App) -> None:
    member = make_member(app)
    post(app, member.id, "earn", 999, "e1")
    post(app, member.id, "redeem", -999, "r1")
    post(app, member.id, "bonus", 1, "b1")
    with app.database.sessions() as session:
        row = session.get(Member, member.id)
        assert row is not None
        assert (row.tier, row.lifetime_points, row.points_balance) == ("silver", 1000, 1)
    post(app, member.id, "adjust", -1, "a1")
    with app.database.sessions() as session:
        row = session.get(Member, member.id)
        assert row is not None
        assert (row.tier, row.lifetime_points, row.points_balance) == ("bronze", 999, 0)


def test_partial_adjust_takes_only_what_is_there(app: App) -> None:
    member = make_member(app)
    post(app, member.id, "earn", 30, "e1")
    post(app, member.id, "adjust", -50, "claw", partial=True)
    assert balance(app, member.id) == (0, 0)
