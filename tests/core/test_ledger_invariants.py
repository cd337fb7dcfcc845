"""Stateful property test of the ledger's invariants against a small model.

Invariants: the cached balance equals the sum of the entries, it never goes
negative, each idempotency key is applied at most once, and expired points
cannot be redeemed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import func, select

from loyalty import ledger
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.errors import InsufficientPointsError
from loyalty.models import LedgerEntry, Member
from tests.conftest import START
from tests.factories import make_member

THRESHOLDS = {"bronze": 0, "silver": 1000, "gold": 5000}
KEYS = st.sampled_from([f"k{i}" for i in range(12)])


@dataclass
class Lot:
    remaining: int
    expires_at: datetime | None
    order: int


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self, base: App) -> None:
        super().__init__()
        self.clock = FrozenClock(START)
        self.app = App(base.settings, base.database, self.clock)
        self.member_id = make_member(self.app).id
        self.prefix = f"{self.member_id}:"
        self.used: dict[str, int] = {}
        self.lots: list[Lot] = []

    # -- the model --------------------------------------------------------------------
    def live(self) -> list[Lot]:
        now = self.clock.now()
        lots = [
            lot
            for lot in self.lots
            if lot.remaining and (not lot.expires_at or lot.expires_at > now)
        ]
        return sorted(
            lots, key=lambda lot: (lot.expires_at is None, lot.expires_at or now, lot.order)
        )

    def model_redeemable(self) -> int:
        return sum(lot.remaining for lot in self.live())

    def model_balance(self) -> int:
        return sum(self.used.values())

    # -- the system ---------------------------------------------------------------------
    def apply(
        self, kind: ledger.Kind, delta: int, key: str, expires_at: datetime | None = None
    ) -> bool:
        with self.app.database.transaction() as session:
            member = ledger.lock_member(session, self.member_id)
            return ledger.apply(
                session,
                member,
                kind,
                delta,
                key=self.prefix + key,
                reason=kind,
                now=self.clock.now(),
                thresholds=THRESHOLDS,
                expires_at=expires_at,
            ).applied

    @rule(
        points=st.integers(1, 500),
        key=KEYS,
        days=st.none() | st.integers(1, 30),
        kind=st.sampled_from(["earn", "bonus", "adjust"]),
    )
    def add(self, points: int, key: str, days: int | None, kind: ledger.Kind) -> None:
        expires_at = self.clock.now() + timedelta(days=days) if days else None
        applied = self.apply(kind, points, key, expires_at)
        assert applied == (key not in self.used)
        if applied:
            self.used[key] = points
            self.lots.append(Lot(points, expires_at, len(self.lots)))

    @rule(points=st.integers(1, 800), key=KEYS, kind=st.sampled_from(["redeem", "adjust"]))
    def take(self, points: int, key: str, kind: ledger.Kind) -> None:
        if key in self.used:
            assert self.apply(kind, -points, key) is False
            return
        available = self.model_redeemable()
        try:
            applied = self.apply(kind, -points, key)
        except InsufficientPointsError as exc:
            assert points > available
            assert exc.available == available
            return
        assert applied and points <= available
        self.expire_model()  # a successful take posts the expiries it found first
        self.used[key] = -points
        left = points
        for lot in self.live():
            taken = min(left, lot.remaining)
            lot.remaining -= taken
            left -= taken

    @rule(days=st.integers(1, 20))
    def time_passes(self, days: int) -> None:
        self.clock.advance(timedelta(days=days))

    @rule()
    def expiry_runs(self) -> None:
        with self.app.database.transaction() as session:
            ledger.expire_due(
                session, ledger.lock_member(session, self.member_id), now=self.clock.now()
            )
        self.expire_model()

    def expire_model(self) -> None:
        now = self.clock.now()
        for lot in self.lots:
            if lot.remaining and lot.expires_at and lot.expires_at <= now:
                self.used[f"expire:{lot.order}"] = -lot.remaining
                lot.remaining = 0

    @invariant()
    def balance_is_the_sum_of_entries_and_never_negative(self) -> None:
        with self.app.database.sessions() as session:
            cached = session.scalar(
                select(Member.points_balance).where(Member.id == self.member_id)
            )
            summed, keys, distinct = session.execute(
                select(
                    func.coalesce(func.sum(LedgerEntry.delta), 0),
                    func.count(LedgerEntry.id),
                    func.count(func.distinct(LedgerEntry.idempotency_key)),
                ).where(LedgerEntry.member_id == self.member_id)
            ).one()
            remaining = session.scalar(
                select(func.coalesce(func.sum(LedgerEntry.remaining), 0)).where(
                    LedgerEntry.member_id == self.member_id
                )
            )
        assert cached == summed >= 0
        assert keys == distinct
        assert remaining == cached  # every point in the balance sits in some lot
        assert cached == self.model_balance()


def test_ledger_invariants(app: App) -> None:
    class LedgerMachineOnApp(LedgerMachine):
        def __init__(self) -> None:
            super().__init__(app)

    run_state_machine_as_test(
        LedgerMachineOnApp,
        settings=settings(
            max_examples=25,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
