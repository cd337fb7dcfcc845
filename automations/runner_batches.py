"""Running enrollments due together: one transaction for the batch, a savepoint each.

A tick enters or wakes members in batches (`run_enrollments`, RUN_BATCH a message).
Run one by one, each member's steps cost their own transactions and commits; here
the batch holds its enrollments and their members first (in id order; on PostgreSQL
rows another worker holds are skipped, not waited for, and handed back to run on
their own), runs each enrollment's steps as `run_enrollment` does on the rows it
holds, and commits once: about two statements a member. A run that fails rolls the
batch back; each of its enrollments then runs on its own, with that actor's retries
and dead letter, so that one never holds the rest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from automations.runner import Ran, run_steps
from automations.step_messages import messages_together
from loyalty.app import App
from loyalty.models import Enrollment, Member
from loyalty.step_counts import counted_together

__all__ = ["RanBatch", "run_enrollments", "run_held"]

log = logging.getLogger(__name__)


@dataclass
class RanBatch:
    """What a batch's runs left to queue, and the rows (enrollments, or events) to run on
    their own."""

    messages: list[int] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    #: Enrollments now waiting, and when each is due to run again.
    wakes: dict[int, datetime] = field(default_factory=dict)
    #: Held by another worker: each runs alone after the batch.
    alone: list[int] = field(default_factory=list)


def run_enrollments(app: App, enrollment_ids: list[int]) -> RanBatch:
    """Run each enrollment of the batch until it waits or ends, in one transaction.

    A failure raises, and rolls the whole batch back: the caller then runs each alone.
    """
    out = RanBatch()
    ids = sorted(set(enrollment_ids))
    with app.database.transaction() as session:
        # (the rows stay referenced here, so the session's identity map keeps them)
        held = _hold(session, app, ids)
        out.alone += [i for i in ids if i not in held]
        run_held(session, app, sorted(held), out, shard=ids[0] if ids else 0)
    return out


def run_held(
    session: Session, app: App, enrollment_ids: list[int], out: RanBatch, *, shard: int
) -> None:
    """Run each enrollment, whose row and member's the session holds, until it waits or ends;
    their step entries counted, and their messages inserted, together at the end."""
    with counted_together(session, shard=shard), messages_together(session) as made:
        for enrollment_id in enrollment_ids:
            ran = Ran()
            run_steps(session, app, enrollment_id, ran, locked=True)
            out.messages += ran.messages
            out.events += ran.events
            if ran.wake_at is not None:
                out.wakes[enrollment_id] = ran.wake_at
    out.messages += made


def _hold(session: Session, app: App, ids: list[int]) -> dict[int, tuple[Enrollment, Member]]:
    """Lock the batch's enrollments, then their members, each in id order (so two batches
    never deadlock); the enrollments this batch holds with their member, by id."""
    skip = not app.database.is_sqlite
    enrollments = select(Enrollment).where(Enrollment.id.in_(ids)).order_by(Enrollment.id)
    if skip:
        enrollments = enrollments.with_for_update(skip_locked=True)
    rows = session.scalars(enrollments.execution_options(populate_existing=True)).all()
    members = select(Member).where(Member.id.in_({e.member_id for e in rows}))
    if skip:
        members = members.with_for_update(skip_locked=True)
    members = members.order_by(Member.id).execution_options(populate_existing=True)
    locked = {m.id: m for m in session.scalars(members)}
    return {e.id: (e, locked[e.member_id]) for e in rows if e.member_id in locked}
