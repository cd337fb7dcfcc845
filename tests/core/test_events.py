"""Events: stored once, processed once, with their effects on points and stats."""

from __future__ import annotations

import json
import threading
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import ColumnElement, event, func, select

from automations import runtime
from automations.intake import emit, ingest_file, store_batch
from automations.runtime.broker import build_broker, embedded_worker
from loyalty.app import App
from loyalty.errors import (
    InvalidEventError,
    SkippableError,
    UnknownEventTypeError,
    UnknownMemberError,
)
from loyalty.event_types import EventInput
from loyalty.events import Recorded, record
from loyalty.models import Event, LedgerEntry, Member, Referral
from tests.factories import make_member


def order(member: str, order_id: str, total: str, event_id: str | None = None) -> EventInput:
    return EventInput(
        "order.completed",
        member,
        id=event_id or f"evt-{order_id}",
        data={"order_id": order_id, "total": total, "currency": "EUR"},
    )


def emit_all(app: App, *inputs: EventInput) -> None:
    runtime.configure(app)
    with embedded_worker(build_broker(app.settings), threads=2):
        for event in inputs:
            emit(app, event)


def member(app: App, external_id: str) -> Member:
    with app.database.sessions() as session:
        row = session.scalar(select(Member).where(Member.external_id == external_id))
        assert row is not None
        return row


def count(app: App, model: type, *where: ColumnElement[bool]) -> int:
    with app.database.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_an_order_earns_points_and_updates_stats(app: App) -> None:
    make_member(app, external_id="m-1")
    emit_all(app, order("m-1", "1001", "142.99"), order("m-1", "1002", "10"))
    m = member(app, "m-1")
    assert (m.points_balance, m.lifetime_points, m.orders_count) == (152, 152, 2)
    assert m.total_spent == Decimal("152.99")
    assert m.last_order_at == app.clock.now()


def test_emitting_the_same_event_twice_changes_nothing(app: App) -> None:
    make_member(app, external_id="m-1")
    emit_all(app, order("m-1", "1001", "50"))
    before = member(app, "m-1")
    emit_all(app, order("m-1", "1001", "50"))
    # The same order under a new event id earns nothing more either.
    emit_all(app, order("m-1", "1001", "50", event_id="other-id"))
    after = member(app, "m-1")
    assert (after.points_balance, after.orders_count) == (before.points_balance, 1) == (50, 1)
    assert count(app, Event) == 2 + 1  # two order events, one points.changed
    assert count(app, LedgerEntry) == 1


def test_a_refund_claws_back_what_the_order_earned(app: App) -> None:
    make_member(app, external_id="m-1")
    refund = EventInput("order.refunded", "m-1", id="r-1", data={"order_id": "1001", "total": "25"})
    emit_all(app, order("m-1", "1001", "100"), refund)
    m = member(app, "m-1")
    assert (m.points_balance, m.lifetime_points, m.total_spent) == (75, 75, Decimal("75.00"))
    emit_all(app, EventInput("order.refunded", "m-1", id="r-2", data={"order_id": "1001"}))
    assert member(app, "m-1").points_balance == 0


def test_a_refund_after_spending_takes_only_what_is_left(app: App) -> None:
    make_member(app, external_id="m-1")
    redeem = EventInput("reward.redeemed", "m-1", id="red-1", data={"points": 80})
    refund = EventInput("order.refunded", "m-1", id="r-1", data={"order_id": "1001"})
    emit_all(app, order("m-1", "1001", "100"))
    emit_all(app, redeem)
    emit_all(app, refund)
    assert member(app, "m-1").points_balance == 0
    with app.database.sessions() as session:
        error = session.scalar(select(Event.error).where(Event.external_id == "r-1"))
    assert error is not None and "only 20 of 100 points" in error


def test_a_redeem_beyond_the_balance_is_recorded_not_retried(app: App) -> None:
    make_member(app, external_id="m-1")
    emit_all(app, EventInput("reward.redeemed", "m-1", id="red-1", data={"points": 10}))
    with app.database.sessions() as session:
        event = session.scalar(select(Event))
        assert event is not None and event.processed_at is not None
        assert event.error == "cannot take 10 points: the member has 0 redeemable points"


@pytest.mark.parametrize(
    ("event", "error", "message"),
    [
        (EventInput("order.completed", "ghost", data={}), UnknownMemberError, "no member"),
        (EventInput("order.shipped", "m-1"), UnknownEventTypeError, "unknown event type"),
        (
            EventInput(
                "order.completed", "m-1", data={"order_id": "1", "total": "-5", "currency": "EUR"}
            ),
            InvalidEventError,
            "data.total must be zero or more",
        ),
    ],
)
def test_bad_events_store_nothing(
    app: App, event: EventInput, error: type[Exception], message: str
) -> None:
    make_member(app, external_id="m-1")
    with pytest.raises(error, match=message):
        emit_all(app, event)
    assert count(app, Event) == 0


def test_custom_event_types_are_stored(app: App, database: object) -> None:
    app.settings = app.settings.model_copy(update={"event_types": ["review.submitted"]})
    make_member(app, external_id="m-1")
    emit_all(app, EventInput("review.submitted", "m-1", id="rv-1", data={"stars": 5}))
    assert count(app, Event, Event.processed_at.is_not(None)) == 1


def test_first_order_completes_a_referral_when_there_is_no_hold(app: App) -> None:
    app.settings = app.settings.model_copy(update={"referral_hold_days": 0})
    referrer = make_member(app, external_id="ref")
    referee = make_member(app, external_id="new", referred_by_id=referrer.id)
    with app.database.transaction() as session:
        session.add(
            Referral(
                referrer_id=referrer.id,
                referee_id=referee.id,
                code=referrer.referral_code,
                status="pending",
                created_at=app.clock.now(),
            )
        )
    emit_all(app, order("new", "1", "20"))
    emit_all(app, order("new", "2", "20"))
    with app.database.sessions() as session:
        referral = session.scalar(select(Referral))
        caused = session.scalar(select(Event).where(Event.type == "referral.completed"))
    assert referral is not None and referral.status == "completed"
    assert caused is not None and caused.member_id == referrer.id
    assert caused.processed_at is not None
    assert caused.payload == {
        "referee": "new",
        "referee_first_name": None,
        "order_id": "1",
        "fraud_verdict": "clean",
    }


def test_ingest_reports_bad_lines_and_ingests_the_rest(app: App, tmp_path: Path) -> None:
    make_member(app, external_id="m-1")
    lines = [
        json.dumps(
            {
                "type": "order.completed",
                "member": "m-1",
                "id": "a",
                "at": "2026-03-01T10:00:00+01:00",
                "data": {"order_id": "1", "total": 10, "currency": "EUR"},
            }
        ),
        "{broken",
        json.dumps({"type": "order.completed", "member": "ghost", "id": "b", "data": {}}),
        json.dumps(
            {"type": "order.completed", "member": "m-1", "id": "c", "at": "yesterday", "data": {}}
        ),
        json.dumps(
            {
                "type": "order.completed",
                "member": "m-1",
                "id": "a",
                "data": {"order_id": "1", "total": 10, "currency": "EUR"},
            }
        ),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    runtime.configure(app)
    with embedded_worker(build_broker(app.settings), threads=2):
        report = ingest_file(app, path, source="shop")
    assert (report.lines, report.stored, report.duplicates) == (5, 1, 1)
    assert [n for n, _ in report.errors] == [2, 3, 4]
    assert "no member with external_id 'ghost'" in report.errors[1][1]
    assert "'at' is not ISO 8601" in report.errors[2][1]
    assert member(app, "m-1").points_balance == 10


def test_a_refund_that_overtakes_its_order_waits_for_it(app: App) -> None:
    make_member(app, external_id="m-1")
    app.settings = app.settings.model_copy(update={"retry_min_backoff_ms": 10})
    with app.database.transaction() as session:
        # The order is stored first but not yet processed when the refund arrives.
        from loyalty.events import record_event

        order_row, _ = record_event(
            session, order("m-1", "1001", "100"), settings=app.settings, now=app.clock.now()
        )
    refund = EventInput("order.refunded", "m-1", id="r-1", data={"order_id": "1001"})
    runtime.configure(app)
    from automations.runtime import actors

    with embedded_worker(build_broker(app.settings), threads=1):
        emit(app, refund)  # processed first, finds the order pending and retries
        actors.send("process_event", order_row.id)
    m = member(app, "m-1")
    assert (m.points_balance, m.orders_count) == (0, 1)
    with app.database.sessions() as session:
        assert session.scalar(select(Event.error).where(Event.external_id == "r-1")) is None


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cents=st.integers(min_value=1, max_value=500_00),
    cuts=st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=4),
)
def test_partial_refunds_that_add_up_to_the_order_claw_back_exactly_what_it_earned(
    app: App, cents: int, cuts: list[int]
) -> None:
    # Given an order of any total, refunded in parts that add up to the whole order
    total = Decimal(cents) / 100
    weights = sum(cuts)
    parts = [Decimal(cents * c // weights) for c in cuts]
    parts[-1] += cents - sum(parts)
    external = f"h-{uuid.uuid4().hex[:10]}"
    make_member(app, external_id=external)
    refunds = [
        EventInput(
            "order.refunded",
            external,
            id=f"{external}-r{n}",
            data={"order_id": f"{external}-o", "total": str(part / 100)},
        )
        for n, part in enumerate(parts)
        if part > 0
    ]
    # When the order is processed, then its refunds (how long a refund waits for its order
    # is another test's subject)
    emit_all(app, order(external, f"{external}-o", str(total), event_id=f"{external}-e"))
    emit_all(app, *refunds)
    # Then the points clawed back equal the points earned, and each refund took its share
    with app.database.sessions() as session:
        deltas = session.scalars(
            select(LedgerEntry.delta)
            .join(Member, Member.id == LedgerEntry.member_id)
            .where(Member.external_id == external)
            .order_by(LedgerEntry.id)
        ).all()
    earned = max(deltas[0], 0) if deltas else 0
    assert sum(deltas) == 0, (total, parts, deltas)
    assert member(app, external).points_balance == 0
    if earned:
        assert member(app, external).total_spent == 0
    assert all(d <= 0 for d in deltas[1:]) and -sum(deltas[1:]) == earned


def test_a_refund_of_one_unit_of_74_claws_back_one_point(app: App) -> None:
    make_member(app, external_id="m-1")
    refund = EventInput("order.refunded", "m-1", id="r-1", data={"order_id": "1", "total": "1"})
    emit_all(app, order("m-1", "1", "74"), refund)
    assert member(app, "m-1").points_balance == 73


def test_a_refund_larger_than_its_order_claws_back_at_most_the_order(app: App) -> None:
    make_member(app, external_id="m-1")
    emit_all(app, order("m-1", "1", "50"), order("m-1", "2", "30"))
    refund = EventInput("order.refunded", "m-1", id="r-1", data={"order_id": "1", "total": "500"})
    emit_all(app, refund)
    m = member(app, "m-1")
    assert (m.points_balance, m.total_spent) == (30, Decimal("30"))


def test_the_programs_own_source_is_reserved_and_nothing_is_stored(app: App) -> None:
    make_member(app, external_id="m-1")
    data = {"order_id": "1", "total": "10", "currency": "EUR"}
    forged = EventInput("order.completed", "m-1", id="f-1", data=data, source="loyalty")
    with pytest.raises(InvalidEventError, match="reserved"):
        emit(app, forged)
    assert count(app, Event) == 0


def test_events_for_an_erased_member_are_refused(app: App) -> None:
    make_member(app, external_id="m-1")
    with app.database.transaction() as session:
        erased = session.scalar(select(Member).where(Member.external_id == "m-1"))
        assert erased is not None
        erased.erased_at = app.clock.now()
    with pytest.raises(InvalidEventError, match="erased"):
        emit(app, order("m-1", "1001", "10"))
    assert count(app, Event) == 0


HOSTILE: dict[str, dict[str, Any]] = {
    "a huge total": {"data": {"order_id": "1", "total": "1e30", "currency": "EUR"}},
    "an endless total": {"data": {"order_id": "1", "total": "1e1000000", "currency": "EUR"}},
    "a far-future time": {"at": "9999-12-31T23:59:59Z"},
    "a long id": {"id": "x" * 300},
    "a NUL in the payload": {"data": {"order_id": "1\u0000", "total": "5", "currency": "EUR"}},
    "a NUL in the id": {"id": "e\u00001"},
    "a deep payload": {
        "data": {
            "order_id": "1",
            "total": "5",
            "currency": "EUR",
            "x": [[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]],
        }
    },
    "a huge payload": {
        "data": {"order_id": "1", "total": "5", "currency": "EUR", "x": "y" * 70_000}
    },
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_event_is_refused_at_intake_and_the_members_next_event_goes_through(
    app: App, tmp_path: Path, case: str
) -> None:
    # Given a file whose first line is hostile and whose second is a good order
    make_member(app, external_id="m-1")
    order_data = {"order_id": "1", "total": "5", "currency": "EUR"}
    bad: dict[str, Any] = {"type": "order.completed", "member": "m-1", "id": "bad-1"}
    bad |= {"data": order_data} | HOSTILE[case]
    good_data = {"order_id": "2", "total": "40", "currency": "EUR"}
    good = {"type": "order.completed", "member": "m-1", "id": "good-1", "data": good_data}
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(bad) + "\n" + json.dumps(good) + "\n")

    # When it is ingested
    runtime.configure(app)
    with embedded_worker(build_broker(app.settings), threads=2):
        report = ingest_file(app, path, source="shop")

    # Then the hostile line is refused with a reason, nothing of it is stored, and the good
    # order is processed
    assert [number for number, _ in report.errors] == [1], report.errors
    assert report.stored == 1
    with app.database.sessions() as session:
        stored = session.scalars(select(Event).where(Event.source == "shop")).all()
    assert [e.external_id for e in stored] == ["good-1"]
    assert stored[0].processed_at is not None and stored[0].error is None
    assert member(app, "m-1").points_balance == 40


@pytest.mark.integration
def test_a_batch_meeting_an_event_another_request_is_storing_answers_it_as_a_duplicate(
    postgres_app: App,
) -> None:
    # Given another request storing event "dup" at this moment, not committed yet
    app = postgres_app
    for n in range(3):
        make_member(app, external_id=f"b-{n}")
    batch = [EventInput("member.enrolled", f"b-{n}", id=f"e-{n}") for n in range(3)]
    batch[1] = EventInput("member.enrolled", "b-1", id="dup")
    other = app.database.sessions()
    other.begin()
    record(other, batch[1], settings=app.settings, now=app.clock.now())
    answers: list[list[Recorded | SkippableError]] = []

    # When a batch holding the same event is stored meanwhile (it waits for the other one)
    storing = threading.Thread(target=lambda: answers.append(store_batch(app, batch)))
    storing.start()
    storing.join(timeout=1.0)
    assert storing.is_alive()  # held at the same event's key
    other.commit()
    other.close()
    storing.join(timeout=30)

    # Then the database's refusal undid the batch's first try only: the same event is
    # answered as one stored before, and the other two are stored once
    [results] = answers
    assert [isinstance(r, Recorded) and r.created for r in results] == [True, False, True]
    with app.database.sessions() as session:
        assert sorted(session.scalars(select(Event.external_id))) == ["dup", "e-0", "e-2"]


def test_a_batch_of_known_members_events_takes_no_savepoint(app: App) -> None:
    # Savepoints are for the batches the database refuses (and for events that may create
    # their member): a plain batch is stored in its transaction alone
    for n in range(10):
        make_member(app, external_id=f"s-{n}")
    statements: list[str] = []

    def seen(_c: Any, _cur: Any, text: str, *_: Any) -> None:
        statements.append(text)

    event.listen(app.database.engine, "before_cursor_execute", seen)
    try:
        results = store_batch(
            app, [EventInput("member.enrolled", f"s-{n}", id=f"e-{n}") for n in range(10)]
        )
    finally:
        event.remove(app.database.engine, "before_cursor_execute", seen)
    assert all(isinstance(r, Recorded) and r.created for r in results)
    assert not [s for s in statements if s.upper().startswith(("SAVEPOINT", "RELEASE"))]
