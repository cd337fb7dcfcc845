"""Running enrollments due together: one transaction for the batch, a savepoint each.

A tick enters or wakes members in batches (`run_enrollments`, RUN_BATCH a message).
Run one by one, each member's steps cost their own transactions and commits; here
the batch holds its enrollments and their members first (in id order; on PostgreSQL
rows another worker holds are skipped, not waited for), runs each enrollment's steps
as `run_enrollment` does inside a savepoint, and commits once. An enrollment whose
run fails rolls back alone and, like one another worker held, is handed back to run
on its own (with that actor's retries and dead letter): it never holds the rest.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from automations.runner import Ran, run_steps
from loyalty import ledger
from loyalty.app import App
from loyalty.models import Enrollment, Member
from loyalty.step_counts import counted_together

__all__ = ["RanBatch", "run_enrollments"]

log = logging.getLogger(__name__)


@dataclass
class RanBatch:
    """What a batch's runs left to queue, and the enrollments to run on their own."""

    messages: list[int] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    #: Enrollments now waiting, and when each is due to run again.
    wakes: dict[int, datetime] = field(default_factory=dict)
    #: Held by another worker, or failed here: each runs again alone.
    alone: list[int] = field(default_factory=list)


def run_enrollments(app: App, enrollment_ids: list[int]) -> RanBatch:
    """Run each enrollment of the batch until it waits or ends, in one transaction."""
    out = RanBatch()
    ids = sorted(set(enrollment_ids))
    with app.database.transaction() as session:
        held = _hold(session, app, ids)
        out.alone += [i for i in ids if i not in held]
        with counted_together(session, shard=ids[0] if ids else 0) as entered:
            for enrollment_id in sorted(held):
                _run_one(session, app, enrollment_id, entered, out)
    return out


def _run_one(
    session: Session,
    app: App,
    enrollment_id: int,
    entered: Counter[tuple[str, str]],
    out: RanBatch,
) -> None:
    """Run one enrollment of the batch in a savepoint; one that fails is left to run alone."""
    ran = Ran()
    before = Counter(entered)
    try:
        with session.begin_nested():
            run_steps(session, app, enrollment_id, ran)
    except Exception as exc:
        ledger.take_emitted(session)  # rolled back with the savepoint, as its step counts
        entered.clear()
        entered.update(before)
        log.warning(
            "batch.enrollment_run_alone",
            extra={"enrollment_id": enrollment_id, "error": type(exc).__name__},
        )
        out.alone.append(enrollment_id)
        return
    out.messages += ran.messages
    out.events += ran.events
    if ran.wake_at is not None:
        out.wakes[enrollment_id] = ran.wake_at


def _hold(session: Session, app: App, ids: list[int]) -> set[int]:
    """Lock the batch's enrollments, then their members, each in id order (so two batches
    never deadlock); the enrollments this batch holds with their member."""
    skip = not app.database.is_sqlite
    enrollments = select(Enrollment.id, Enrollment.member_id).where(Enrollment.id.in_(ids))
    if skip:
        enrollments = enrollments.with_for_update(skip_locked=True)
    rows = session.execute(enrollments.order_by(Enrollment.id)).all()
    members = select(Member.id).where(Member.id.in_({m for _, m in rows}))
    if skip:
        members = members.with_for_update(skip_locked=True)
    locked = set(session.scalars(members.order_by(Member.id)))
    return {e for e, m in rows if m in locked}
