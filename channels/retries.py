"""Send retries: backoff with jitter after a retriable provider answer, giving up after
SEND_MAX_ATTEMPTS with a dead letter, and the operator's replay that tries again.
"""

from __future__ import annotations

import logging
import random
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from channels.outcomes import Outcome
from loyalty.app import App
from loyalty.db import insert_ignore
from loyalty.models import DeadLetter, Message
from loyalty.settings import Settings
from loyalty.states import MessageState

__all__ = [
    "ACTOR",
    "DELIVERED_CHANNELS",
    "QUEUE",
    "next_retry",
    "retry_delay",
    "retry_failed",
    "retry_later",
]

log = logging.getLogger("channels.delivery")

#: Outbox channels the `deliver_message` actor delivers (`crm` rows go with the CRM push).
DELIVERED_CHANNELS = ("email", "sms", "http", "crm_task")

#: The worker actor that delivers one message, and its queue (automations.runtime.actors
#: declares it under these names): a message given up on is dead-lettered as a call of it.
ACTOR = "deliver_message"
QUEUE = "messages"


def retry_delay(
    attempts: int,
    settings: Settings,
    retry_after: float | None = None,
    *,
    rng: random.Random | None = None,
) -> timedelta:
    """How long a message waits after its `attempts`-th try failed in a retriable way.

    Exponential backoff with *equal jitter*: the step is SEND_RETRY_BASE_SECONDS ·
    2^(attempts-1), capped at SEND_RETRY_MAX_SECONDS, and the wait is drawn uniformly
    from its upper half. The jitter spreads a batch that failed together, and each
    wait is at least as long as the one before (until the cap). Never shorter than
    the provider's Retry-After.
    """
    step = min(
        float(settings.send_retry_max_seconds),
        settings.send_retry_base_seconds * 2.0 ** (max(attempts, 1) - 1),
    )
    wait = (rng or random).uniform(step / 2, step)
    if retry_after is not None:
        wait = max(wait, retry_after)
    return timedelta(seconds=wait)


def retry_later(
    session: Session,
    settings: Settings,
    ids: list[int],
    outcome: Outcome,
    now: datetime,
    *,
    max_attempts: int | None = None,
) -> str:
    """Back to pending after a backoff, or failed and dead-lettered once out of attempts.

    `max_attempts` defaults to SEND_MAX_ATTEMPTS (journey calls pass their own).
    """
    limit = settings.send_max_attempts if max_attempts is None else max_attempts
    claimed = session.execute(
        select(Message.id, Message.attempts)
        .where(Message.id.in_(ids), Message.state == MessageState.CLAIMED)
        .with_for_update()
    ).all()
    changes: list[dict[str, Any]] = []
    dead: list[dict[str, Any]] = []
    state = MessageState.PENDING
    for message_id, attempts in claimed:
        if outcome.throttled:
            # The provider turned the request away unread (429): not a try of the message,
            # so a rate-limit storm delays messages and never uses up their attempts.
            changes.append(
                {
                    "id": message_id,
                    "state": MessageState.PENDING,
                    "attempts": max(attempts - 1, 0),
                    "next_attempt_at": now + retry_delay(1, settings, outcome.retry_after),
                    "request_at": None,
                    "error": outcome.error,
                    "updated_at": now,
                }
            )
            continue
        if attempts < limit:
            state = MessageState.PENDING
            due = now + retry_delay(attempts, settings, outcome.retry_after)
            changes.append(
                {
                    "id": message_id,
                    "state": state,
                    "next_attempt_at": due,
                    "request_at": None,
                    "error": outcome.error,
                    "updated_at": now,
                }
            )
            continue
        state = MessageState.FAILED
        error = f"gave up after {attempts} attempts: {outcome.error or 'retriable failure'}"
        changes.append(
            {
                "id": message_id,
                "state": state,
                "next_attempt_at": None,
                "error": error,
                "updated_at": now,
            }
        )
        dead.append(_dead_letter(message_id, error, now))
    if changes:
        session.execute(update(Message), changes)
    if dead:
        insert_ignore(session, DeadLetter, dead, ["message_id"])
        log.warning("message.gave_up", extra={"messages": len(dead), "error": outcome.error})
    log.info(
        "message.outcome",
        extra={"messages": len(ids), "outcome": outcome.kind, "given_up": len(dead)},
    )
    return state


def _dead_letter(message_id: int, error: str, now: datetime) -> dict[str, Any]:
    return {
        "message_id": str(uuid.uuid4()),
        "queue": QUEUE,
        "actor": ACTOR,
        "args": {"args": [message_id], "kwargs": {}},
        "error": error,
        "failed_at": now,
    }


def give_up(session: Session, message: Message, error: str, now: datetime) -> None:
    """Fail a message for good with a dead letter, so that `loyalty dlq replay` can retry it."""
    message.state, message.error, message.updated_at = MessageState.FAILED, error, now
    message.next_attempt_at = None
    insert_ignore(session, DeadLetter, [_dead_letter(message.id, error, now)], ["message_id"])
    log.warning("message.gave_up", extra={"messages": 1, "error": error})


def next_retry(app: App, message_id: int) -> float | None:
    """Seconds until a pending SMS is due again (None: it is not waiting to retry).

    The worker uses it to queue the retry itself, with the provider's Retry-After,
    instead of leaving it for the scheduler's next relay tick.
    """
    with app.database.sessions() as session:
        due = session.scalar(
            select(Message.next_attempt_at).where(
                Message.id == message_id, Message.state == MessageState.PENDING
            )
        )
    if due is None:
        return None
    return max(float((due - app.clock.now()).total_seconds()), 0.0)


def retry_failed(session: Session, message_id: int, *, now: datetime) -> bool:
    """Put a failed message or journey call back to pending, due now, attempts counted afresh.

    What an operator's replay of its dead letter does before it queues the delivery
    again. Only a failed message changes (True when it did), so running it twice, or
    on a message that since went out, changes nothing more.
    """
    message = session.scalar(
        select(Message)
        .where(
            Message.id == message_id,
            Message.state == MessageState.FAILED,
            Message.channel.in_(DELIVERED_CHANNELS),
        )
        .with_for_update()
    )
    if message is None:
        return False
    message.decisions = {
        **message.decisions,
        "retried": {"at": now.isoformat(), "after": message.error, "attempts": message.attempts},
    }
    message.state = MessageState.PENDING
    message.attempts = 0
    message.next_attempt_at = now
    message.error = None
    message.updated_at = now
    log.info("message.retried", extra={"message_id": message_id})
    return True
