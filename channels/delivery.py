"""Delivering queued messages: claim, check the contact policy, render, send, record.

SMS go one by one (Twilio, paced per sender); email to SendGrid leaves in batches, so
messages that share a template go in one request (`channels.email_batches`). Without
provider credentials, "send" writes to the local outbox. Claiming a message, its state
machine and recording outcomes are `channels.claims`; `settle_stale` settles claims
whose worker died and unknowns nobody confirmed.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from channels import outbox
from channels.claims import is_due, prepare, record, request_left, uses_sendgrid, uses_twilio
from channels.compose import message_headers
from channels.email_batches import LOOKED_AT, Gathering, send_email_batch
from channels.outcomes import measured
from channels.policy import MessageRow
from channels.render import Rendered
from channels.twilio_sender import OutgoingSms, TwilioSender
from loyalty.app import App
from loyalty.members import MemberRow
from loyalty.models import Message
from loyalty.states import MessageState

__all__ = ["NOT_LOCAL", "NotLocal", "deliver", "deliver_locally", "settle_stale"]

log = logging.getLogger(__name__)

#: A claim whose request has not left after this long returns to pending (its worker died
#: or stalled before sending: nothing reached the provider).
CLAIM_LEASE = timedelta(minutes=2)
#: How long a sender's shared window pauses after a 429 that named no Retry-After.
THROTTLE_PAUSE_SECONDS = 1.0
#: A request that left with no outcome recorded after this long is possibly sent: unknown.
CLAIM_TIMEOUT = timedelta(minutes=10)


def deliver(app: App, message_id: int, loaded: MessageRow | None = None) -> str | Gathering | None:
    """Deliver one message if it is due; returns its new state (None: nothing to do here).

    An email to SendGrid may answer `Gathering` instead: its batch is not complete yet,
    and this message's delivery is to run again after the wait it names. `loaded` is the
    row as the caller just read it, if it did.
    """
    if loaded is None:
        with app.database.sessions() as session:
            loaded = session.execute(select(*LOOKED_AT).where(Message.id == message_id)).first()
    channel = loaded.channel if loaded is not None else None
    if channel not in ("email", "sms"):
        return None  # CRM updates go with the push; journey calls and tasks have their own
    if channel == "email" and uses_sendgrid(app):
        return send_email_batch(app, message_id, loaded)  # email to SendGrid leaves in batches
    if channel != "sms" or not uses_twilio(app):
        return _deliver_locally(app, message_id)
    sender = TwilioSender(app.settings, app.pacers)
    # The rate window first: its wait, or an unreachable Redis, leaves the message pending.
    with sender.slot():
        now = app.clock.now()
        with app.database.transaction() as session:
            message = session.get(Message, message_id, with_for_update=True)
            if message is None or not is_due(message, now):
                return None
            prepared = prepare(session, app, message, now)
            if prepared is None:
                return message.state
            sms = OutgoingSms(message.id, prepared.member.phone or "", prepared.rendered.body)
        if not request_left(app, [message_id]):
            return None  # the claim lapsed (this worker stalled) and is another's now
        outcome = measured("twilio", functools.partial(sender.send_now, sms))
    if outcome.throttled:
        sender.pause(outcome.retry_after or THROTTLE_PAUSE_SECONDS)
    with app.database.transaction() as session:
        return record(session, app, [message_id], outcome, app.clock.now())


class NotLocal:
    """What `deliver_locally` answers for a row of another channel."""


#: The one `NotLocal`.
NOT_LOCAL = NotLocal()


def deliver_locally(app: App, message_id: int) -> str | NotLocal | None:
    """With no provider configured for email nor SMS: deliver an email or SMS to the local
    outbox with the row read once, in the delivery's own transaction; `NOT_LOCAL` for a
    row of another channel (a journey call, a CRM task), which has a delivery of its own."""
    now = app.clock.now()
    with app.database.transaction() as session:
        message = session.get(Message, message_id, with_for_update=True)
        if message is not None and message.channel not in ("email", "sms"):
            return NOT_LOCAL
        return _write_locally(session, app, message, now)


def _deliver_locally(app: App, message_id: int) -> str | None:
    """Write the message to the local outbox (no provider configured for its channel)."""
    now = app.clock.now()
    with app.database.transaction() as session:
        message = session.get(Message, message_id, with_for_update=True)
        return _write_locally(session, app, message, now)


def _write_locally(
    session: Session, app: App, message: Message | None, now: datetime
) -> str | None:
    if message is None or not is_due(message, now):
        return None
    prepared = prepare(session, app, message, now)
    if prepared is None:
        return message.state
    message.provider_id = _write(app, message, prepared.member, prepared.rendered, now)
    message.state, message.sent_at = MessageState.SENT, now
    return message.state


def settle_stale(app: App) -> int:
    """Settle claims whose worker died, and unknowns past their window.

    A claim whose request never left returns to pending (it is sent again, and the
    try does not count); one whose request left may have been sent: unknown, for the
    provider's webhook to settle; unknowns nobody confirmed in time fail.
    """
    now = app.clock.now()
    with app.database.transaction() as session:
        returned = session.execute(
            update(Message)
            .where(
                Message.state == MessageState.CLAIMED,
                Message.request_at.is_(None),
                Message.updated_at < now - CLAIM_LEASE,
            )
            .values(
                state=MessageState.PENDING,
                attempts=Message.attempts - 1,  # claiming counted a try that never left
                next_attempt_at=now,
                updated_at=now,
            )
        )
        claimed = session.execute(
            update(Message)
            .where(
                Message.state == MessageState.CLAIMED,
                Message.request_at.is_not(None),
                Message.request_at < now - CLAIM_TIMEOUT,
            )
            .values(
                state=MessageState.UNKNOWN,
                error="no outcome recorded; possibly sent",
                updated_at=now,
            )
        )
        expired = session.execute(
            update(Message)
            .where(
                Message.state == MessageState.UNKNOWN,
                Message.updated_at < now - timedelta(hours=app.settings.unknown_expiry_hours),
            )
            .values(
                state=MessageState.FAILED,
                error="unknown_expired: no provider confirmation",
                updated_at=now,
            )
        )
    counts = [_rowcount(r) for r in (returned, claimed, expired)]
    if counts[0]:
        log.warning("message.claims_returned", extra={"messages": counts[0]})
    return sum(counts)


def _rowcount(result: Any) -> int:
    return int(result.rowcount or 0)


def _write(app: App, message: Message, member: MemberRow, rendered: Rendered, now: datetime) -> str:
    if not app.settings.outbox_files:  # sent, as if written (the simulator's outbox)
        return outbox.file_name(message.id, "json" if message.channel == "sms" else "eml")
    folder = app.settings.outbox_dir
    if message.channel == "sms":
        path = outbox.write_sms(
            folder,
            message.id,
            rendered,
            to=member.phone or "",
            sent_at=now,
            segments=message.segments,
            member=member.external_id,
        )
        return path.name
    path = outbox.write_email(
        folder,
        message.id,
        rendered,
        to=member.email or "",
        sender=app.settings.email_from or "loyalty@localhost",
        sent_at=now,
        headers=message_headers(app, message),
    )
    return path.name
