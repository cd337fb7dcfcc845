"""What the rewards tests share: a catalog of their own, members with points, counting rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from automations import runtime
from automations.intake import emit
from automations.runtime.broker import build_broker, embedded_worker
from loyalty import ledger
from loyalty.app import App
from loyalty.db import Database
from loyalty.event_types import EventInput
from loyalty.models import Event, LedgerEntry, Member, Redemption
from loyalty.states import LedgerKind
from tests.conftest import make_settings
from tests.factories import make_member

CATALOG = """\
rewards:
  - id: ten_off
    name: {en: "10 off", pl: "10 zł rabatu"}
    cost: 100
    kind: fixed_amount
    value: {PLN: 10, EUR: 2.5}
    valid_for: 30d
  - id: vip_percent
    name: {en: "20% off"}
    cost: 50
    kind: percentage
    percentage: 20
    min_tier: gold
  - id: free_ship
    name: {en: "Free shipping"}
    cost: 30
    kind: free_shipping
    valid_for: 7d
    limit_per_member: 2
"""


def journeys_dir(tmp_path: Path, catalog: str = CATALOG) -> Path:
    folder = tmp_path / "journeys"
    folder.mkdir(exist_ok=True)
    (folder / "rewards.yaml").write_text(catalog, encoding="utf-8")
    return folder


def rewards_app(app: App, tmp_path: Path, **settings: Any) -> App:
    """`app` with the test catalog (and any other settings)."""
    values: dict[str, Any] = {
        "journeys_dir": journeys_dir(tmp_path),
        "outbox_dir": tmp_path / "outbox",
        **settings,
    }
    return App(make_settings(app.database, **values), app.database, app.clock)


def member_with_points(app: App, points: int, **fields: Any) -> Member:
    member = make_member(app, **fields)
    if points:
        with app.database.transaction() as session:
            locked = ledger.lock_member(session, member.id)
            ledger.apply(
                session,
                locked,
                LedgerKind.ADJUST,
                points,
                key=f"seed:{member.id}",
                reason="seed",
                now=app.clock.now(),
                thresholds=app.settings.tier_thresholds,
            )
    return member


def emit_all(app: App, *inputs: EventInput) -> None:
    runtime.configure(app)
    with embedded_worker(build_broker(app.settings), threads=2):
        for event in inputs:
            emit(app, event)


def order(member: str, order_id: str, total: str, currency: str = "PLN") -> EventInput:
    return EventInput(
        "order.completed",
        member,
        id=f"evt-{order_id}",
        data={"order_id": order_id, "total": total, "currency": currency},
    )


def balance(database: Database, member_id: int) -> int:
    with database.sessions() as session:
        member = session.get(Member, member_id)
        assert member is not None
        return member.points_balance


def redemptions(database: Database) -> list[Redemption]:
    with database.sessions() as session:
        return list(session.scalars(select(Redemption).order_by(Redemption.id)))


def ledger_entries(database: Database, member_id: int) -> list[LedgerEntry]:
    with database.sessions() as session:
        return list(
            session.scalars(
                select(LedgerEntry)
                .where(LedgerEntry.member_id == member_id)
                .order_by(LedgerEntry.id)
            )
        )


def events_of(database: Database, event_type: str) -> list[Event]:
    with database.sessions() as session:
        return list(
            session.scalars(select(Event).where(Event.type == event_type).order_by(Event.id))
        )


def count(database: Database, model: Any) -> int:
    with database.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)
