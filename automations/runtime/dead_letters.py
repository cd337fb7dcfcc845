"""Dead letters: messages that failed for good are kept in the database and replayable.

An event whose processing fails for a reason a retry cannot cure (a value the
database refuses, a bug) is also parked (`loyalty.events.park_event`): it stops
holding the member's later events and the relay stops queueing it. One that ran
out of retries on a transient failure (the database away for long) is not: the
relay queues it again once the outage is over. A replay unparks it first.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import dramatiq
from dramatiq import Broker, Middleware
from dramatiq.broker import MessageProxy
from sqlalchemy import select
from sqlalchemy.orm import Session

from automations import runtime
from automations.runtime.actors import transient
from channels import retries
from loyalty.db import Database, error_text, insert_ignore
from loyalty.events import park_event, unpark_event
from loyalty.models import DeadLetter, Enrollment
from loyalty.states import IN_FLIGHT

#: The actor whose dead messages park their event.
EVENT_ACTOR = "process_event"
#: The actor whose dead messages park their enrollment.
ENROLLMENT_ACTOR = "run_enrollment"

__all__ = ["DeadLetters", "list_dead_letters", "replay"]

log = logging.getLogger(__name__)


class DeadLetters(Middleware):
    """Records each message that failed without a retry left."""

    def after_nack(self, broker: Broker, message: MessageProxy) -> None:
        # The worker nacks exactly the messages that failed for good.
        exception: BaseException | None = getattr(message, "_exception", None)
        app = runtime.current()
        # No SQL parameters or quoted row values: they carry members' personal data.
        error = error_text(exception) if exception else "failed"
        now = app.clock.now()
        row = {
            "message_id": message.message_id,
            "queue": message.queue_name,
            "actor": message.actor_name,
            "args": {"args": list(message.args), "kwargs": dict(message.kwargs)},
            "error": error,
            "failed_at": now,
        }
        with app.database.transaction() as session:
            if message.actor_name == ENROLLMENT_ACTOR and not transient(exception):
                for enrollment_id in list(message.args)[:1]:
                    if not _park_enrollment(session, int(enrollment_id), now):
                        # A copy queued before it was parked failed the same way: its dead
                        # letter is there already.
                        log.info(
                            "enrollment.already_parked", extra={"enrollment_id": enrollment_id}
                        )
                        return
            insert_ignore(session, DeadLetter, [row], ["message_id"])
            if message.actor_name == EVENT_ACTOR and not transient(exception):
                for event_id in list(message.args)[:1]:
                    park_event(session, int(event_id), error, now=now)
        log.warning(
            "message.dead_lettered",
            extra={"message_id": message.message_id, "actor": message.actor_name},
        )


def _park_enrollment(session: Session, enrollment_id: int, now: datetime) -> bool:
    """Set aside an enrollment whose run failed for good, so that the wake-up tick does not
    run it (and dead-letter it) again at every tick; False when it was parked already."""
    enrollment = session.get(Enrollment, enrollment_id, with_for_update=True)
    if enrollment is not None and enrollment.parked_at is not None:
        return False
    if enrollment is not None and enrollment.state in IN_FLIGHT:
        enrollment.parked_at = now
        log.warning("enrollment.parked", extra={"enrollment_id": enrollment_id})
    return True


def _unpark_enrollment(session: Session, enrollment_id: int) -> None:
    """Let the wake-up tick run a parked enrollment again (a replay after the fix)."""
    enrollment = session.get(Enrollment, enrollment_id, with_for_update=True)
    if enrollment is not None:
        enrollment.parked_at = None


def list_dead_letters(database: Database, *, include_replayed: bool = False) -> list[DeadLetter]:
    with database.sessions() as session:
        query = select(DeadLetter).order_by(DeadLetter.id)
        if not include_replayed:
            query = query.where(DeadLetter.replayed_at.is_(None))
        return list(session.scalars(query))


def replay(database: Database, broker: Broker, dead_letter_id: int, *, now: datetime) -> DeadLetter:
    """Send the dead message again (actors are safe to run twice) and mark it replayed.

    A delivery given up after SEND_MAX_ATTEMPTS is failed, and its actor would leave
    it so: the message first goes back to pending with its attempts counted afresh.
    A parked event is unparked, so that the worker processes it.
    """
    with database.transaction() as session:
        row = session.get(DeadLetter, dead_letter_id)
        if row is None:
            raise LookupError(f"no dead letter {dead_letter_id}; see `loyalty dlq list`")
        if row.actor == retries.ACTOR:
            for message_id in row.args.get("args", [])[:1]:
                retries.retry_failed(session, int(message_id), now=now)
        if row.actor == EVENT_ACTOR:
            for event_id in row.args.get("args", [])[:1]:
                unpark_event(session, int(event_id))
        if row.actor == ENROLLMENT_ACTOR:
            for enrollment_id in row.args.get("args", [])[:1]:
                _unpark_enrollment(session, int(enrollment_id))
    # Committed before the delivery is queued, so that the worker finds it pending.
    with database.transaction() as session:
        row = session.get(DeadLetter, dead_letter_id, with_for_update=True)
        if row is None:
            raise LookupError(f"no dead letter {dead_letter_id}; see `loyalty dlq list`")
        actor = broker.get_actor(row.actor)
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=row.queue,
            actor_name=row.actor,
            args=tuple(row.args.get("args", [])),
            kwargs=row.args.get("kwargs", {}),
            options={},
        )
        actor.broker.enqueue(message)
        row.replayed_at = now
        return row
