"""Events that arrive together are applied, routed and start their journeys in one transaction.

A batch of sign-ups commits once, its members' first steps included, in a bounded number
of statements per event; the emails they make are queued as one delivery batch. A bad
event rolls the batch back and every other event still goes through, on its own; an event
whose member another worker holds is not waited for.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import select

from automations import event_batches, runtime
from automations.intake import store_batch
from automations.runtime.actors import process_event, process_events
from automations.runtime.broker import build_broker, embedded_worker
from automations.runtime.dead_letters import list_dead_letters
from bench.pipeline_journey import counting
from loyalty.app import App
from loyalty.event_types import EventInput
from loyalty.events import Recorded
from loyalty.models import Event, Member
from loyalty.step_counts import entered_by_step
from tests.core.test_parked_events import BAD_REDEEM, ORDER, store_raw
from tests.engine.helpers import enrollments, journey_folder, messages, published
from tests.engine.test_batch_runs import NOW
from tests.engine.test_wake_batches import HELLO, queued
from tests.factories import make_member

#: Statements a batch of sign-ups takes that start a journey and make an email each,
#: whatever their number (measured: 13 or 14 for 30, on both databases: the reads of the batch,
#: one insert of enrollments and one of emails, the events' and the enrollments' updates
#: in an executemany each; one by one each event took 14 and two commits).
BATCH_STATEMENTS = 20
ORDER_TYPE = "order.completed"


def sign_ups(app: App, root: Path, count: int, prefix: str = "n") -> list[int]:
    """`count` members with email consent and a stored `member.enrolled` each; event ids."""
    published(app, journey_folder(root, {"now": NOW}, HELLO))
    made = [
        make_member(
            app, external_id=f"{prefix}{n}", email=f"{prefix}{n}@example.com", email_consent=True
        )
        for n in range(count)
    ]
    stored = store_batch(
        app, [EventInput("member.enrolled", m.external_id, id=f"e-{m.external_id}") for m in made]
    )
    return [r.row.id for r in stored if isinstance(r, Recorded)]


def test_a_batch_of_events_commits_once_with_the_steps_they_started(
    app: App, tmp_path: Path
) -> None:
    # Given 30 stored sign-ups and a journey that mails each new member
    ids = sign_ups(app, tmp_path, 30)
    runtime.configure(app)
    broker = build_broker(app.settings)
    assert isinstance(broker, StubBroker)

    # When one batch message processes them
    with counting(app.database.engine) as counts:
        process_events(ids)

    # Then one commit applied them, entered the members and ran their first steps
    assert counts.commits == 1, str(counts)
    assert counts.statements <= BATCH_STATEMENTS, str(counts)
    assert Counter(e.state for e in enrollments(app)) == Counter({"completed": 30})
    with app.database.sessions() as session:
        assert entered_by_step(session, "now") == {"mail": 30}
        assert all(session.scalars(select(Event.processed_at).where(Event.id.in_(ids))))
    # And their emails are queued as one delivery batch
    made = sorted(m.id for m in messages(app))
    assert len(made) == 30
    [batch] = queued(broker, "messages")
    assert (batch.actor_name, sorted(batch.args[0])) == ("deliver_messages", made)


def test_a_bad_event_rolls_its_batch_back_and_the_others_still_go_through(
    app: App, tmp_path: Path
) -> None:
    # Given ten sign-ups and, among them, an event that raises when it is applied
    ids = sign_ups(app, tmp_path, 10)
    bad = store_raw(app.database, make_member(app, external_id="bad").id, "e-bad", BAD_REDEEM)
    runtime.configure(app)
    broker = build_broker(app.settings)

    # When they are processed as one batch
    with pytest.raises(ValueError):
        event_batches.process_events(app, [*ids, bad])
    assert enrollments(app) == []  # the batch left nothing behind
    with embedded_worker(broker, threads=1):
        process_events([*ids, bad])

    # Then the ten went through on their own (their emails sent), and only the bad one
    # failed, out of its own retries: parked
    assert Counter(e.state for e in enrollments(app)) == Counter({"completed": 10})
    assert Counter(m.state for m in messages(app)) == Counter({"sent": 10})
    with app.database.sessions() as session:
        rows = {e.id: e for e in session.scalars(select(Event))}
    parked = rows.pop(bad)
    assert parked.processed_at is None and parked.parked_at is not None
    assert all(e.processed_at is not None for e in rows.values())
    assert [d.actor for d in list_dead_letters(app.database)] == ["process_event"]


@pytest.mark.integration
def test_an_event_whose_member_another_worker_holds_goes_alone(
    postgres_app: App, tmp_path: Path
) -> None:
    # Given five sign-ups, and another worker holding one of their members
    app = postgres_app
    ids = sign_ups(app, tmp_path, 5)
    with app.database.transaction() as other:
        held = other.scalar(select(Event).where(Event.id == ids[2]))
        assert held is not None
        other.scalar(select(Member.id).where(Member.id == held.member_id).with_for_update())

        # When the batch runs meanwhile, it does not wait for that member
        done = event_batches.process_events(app, ids)

    # Then the four others went through with their steps; the held one is left to go alone
    assert done.alone == [ids[2]] and len(done.messages) == 4
    assert len(enrollments(app)) == 4

    # And alone, once the member is free, it goes through as well, steps and all
    runtime.configure(app)
    with embedded_worker(build_broker(app.settings), threads=1):
        process_event(ids[2])
    assert Counter(e.state for e in enrollments(app)) == Counter({"completed": 5})


def test_events_an_earlier_one_holds_back_go_alone_in_their_order(app: App, tmp_path: Path) -> None:
    # Given a member whose first order is stored but not processed yet, and a batch with the
    # member's next two orders and another member's sign-up
    [sign_up] = sign_ups(app, tmp_path, 1)
    buyer = make_member(app, external_id="buyer")
    stored = store_batch(
        app,
        [
            EventInput(
                ORDER_TYPE, buyer.external_id, id=f"o-{n}", data={**ORDER, "order_id": str(n)}
            )
            for n in range(3)
        ],
    )
    orders = [r.row.id for r in stored if isinstance(r, Recorded)]

    # When the batch without the first order runs
    done = event_batches.process_events(app, [*orders[1:], sign_up])

    # Then the sign-up went through, and both later orders were left to go alone, in order
    assert done.alone == orders[1:]
    with app.database.sessions() as session:
        processed = {e.id: e.processed_at is not None for e in session.scalars(select(Event))}
    assert processed == {sign_up: True, orders[0]: False, orders[1]: False, orders[2]: False}


WELCOME = """
id: welcome
name: Welcome
status: active
trigger: {type: event, event: member.enrolled}
entry: {once: true}
goal: {event: order.completed, within: 14d}
steps:
  - {id: mail, type: send_email, template: hello}
  - {id: later, type: wait, duration: 3d}
"""


def test_a_members_sign_up_and_first_order_in_one_batch_convert_as_one_by_one(
    app: App, tmp_path: Path
) -> None:
    # Given a journey entered on sign-up whose goal is an order, and a batch holding a
    # member's sign-up and then that member's first order
    published(app, journey_folder(tmp_path, {"welcome": WELCOME}, HELLO))
    member = make_member(app, external_id="new", email="new@example.com", email_consent=True)
    stored = store_batch(
        app,
        [
            EventInput("member.enrolled", member.external_id, id="sign-up"),
            EventInput(ORDER_TYPE, member.external_id, id="order", data=ORDER),
        ],
    )
    ids = [r.row.id for r in stored if isinstance(r, Recorded)]

    # When the batch runs
    done = event_batches.process_events(app, ids)

    # Then the order converted the enrollment the sign-up made, as if they came one by one
    assert done.alone == []
    [enrollment] = enrollments(app)
    assert enrollment.state == "converted" and enrollment.converted_at is not None
