"""Claiming a message and recording what became of it, whichever channel sends it.

A send takes a message only when it is due (`is_due`); `prepare` re-checks the contact
policy, renders it and claims it; `request_left` records, just before the request
leaves, that it may reach the provider; `record` applies the provider's outcome (and
a number's STOP). The data a template sees is built when the message goes out, so
amounts such as expiring points are the ledger's at sending time.

State machine (`loyalty.states.MessageState`): pending → claimed → sent |
unknown | failed, or suppressed, or deferred (quiet hours) → pending. A
retriable failure returns the message to pending with a `next_attempt_at` that
backs off exponentially (never sooner than the provider's Retry-After); after
SEND_MAX_ATTEMPTS tries it fails for good and is dead-lettered, so that
`loyalty dlq replay` can try it again (`retry_failed`). A lost response makes
it `unknown`, settled by provider webhooks or given up after UNKNOWN_EXPIRY_HOURS.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from channels import policy
from channels.batch_facts import BatchFacts
from channels.compose import render_for, with_compliance
from channels.outcomes import Outcome, OutcomeKind
from channels.policy import MessageRow
from channels.render import Rendered, RenderError
from channels.retries import retry_later
from channels.segments import measure
from loyalty.app import App
from loyalty.consent import record_consent
from loyalty.db import among, insert_ignore
from loyalty.members import MemberRow, member_zone
from loyalty.models import Member, Message, Suppression
from loyalty.states import MessageState

__all__ = [
    "Decided",
    "Prepared",
    "decide",
    "is_due",
    "prepare",
    "record",
    "request_left",
    "uses_sendgrid",
    "uses_twilio",
]

# Sending logs under one name, whichever module of it speaks (as `channels.retries` does).
log = logging.getLogger("channels.delivery")


def uses_sendgrid(app: App) -> bool:
    return bool(app.settings.sendgrid_api_key)


def uses_twilio(app: App) -> bool:
    return bool(app.settings.twilio_account_sid and app.settings.twilio_auth_token)


@dataclass
class Prepared:
    message: MessageRow
    member: MemberRow
    rendered: Rendered


@dataclass
class Decided:
    """What the contact policy and rendering made of one message: the state it takes and
    the columns that change with it (None: unchanged)."""

    state: str
    decisions: dict[str, Any]
    rendered: Rendered | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None
    locale: str | None = None
    segments: int | None = None
    cost: Decimal | None = None

    @property
    def claimed(self) -> bool:
        return self.state == MessageState.CLAIMED


def decide(
    session: Session,
    app: App,
    message: MessageRow,
    member: MemberRow,
    now: datetime,
    *,
    pending: int = 0,
    facts: BatchFacts | None = None,
) -> Decided:
    """Policy and rendering for one pending message whose member the caller holds: whether it
    goes now (claimed, with what it says) or the state it takes instead.

    `pending` counts the member's messages claimed already in this batch (not yet
    stored), so frequency caps hold inside a batch too; `facts` is what the batch read
    for all its messages.
    """
    decision = policy.check(
        session,
        member,
        message,
        settings=app.settings,
        now=now,
        zone=member_zone(member, app.settings),
        pending=pending,
        known=facts.policy if facts is not None else None,
    )
    decisions = {**message.decisions, "decision": decision.reason or policy.SEND}
    if decision.verdict == MessageState.DEFERRED:
        deferred_from = decisions.get("deferred_from") or now.isoformat()
        decisions = {**decisions, "deferred_from": deferred_from}
        return Decided(MessageState.DEFERRED, decisions, next_attempt_at=decision.until)
    if not decision.allowed:
        return Decided(decision.verdict, decisions, error=decision.reason)
    try:
        rendered = render_for(
            session,
            app,
            message,
            member,
            now,
            journeys=facts.journeys if facts is not None else None,
            fields=facts.members[member.id] if facts is not None else None,
            enrollments=facts.enrollments if facts is not None else None,
        )
    except RenderError as exc:
        log.warning("message.render_failed", extra={"message_id": message.id})
        return Decided(MessageState.FAILED, decisions, error=f"render: {exc}")
    if message.purpose == "marketing":
        rendered = with_compliance(session, app, message, rendered)
    decided = Decided(MessageState.CLAIMED, decisions, rendered, locale=rendered.locale)
    if message.channel == "sms":
        size = measure(rendered.body)
        decided.segments = size.segments
        decided.cost = size.cost(app.settings.sms_price_per_segment)
        limit = decisions.get("max_segments")
        if limit and size.segments > limit:
            decided.state = MessageState.FAILED
            decided.error = f"too_many_segments: {size.segments} > {limit} ({size.encoding})"
    return decided


def prepare(session: Session, app: App, message: Message, now: datetime) -> Prepared | None:
    """Policy and rendering for one locked, pending message, applied to its row and its
    member locked; None when it does not go now."""
    member = session.get(Member, message.member_id, with_for_update=True)
    assert member is not None
    decided = decide(session, app, message, member, now)
    message.updated_at = now
    message.decisions = decided.decisions
    if decided.locale is not None:
        message.locale = decided.locale
    if decided.segments is not None:
        message.segments, message.cost = decided.segments, decided.cost
    if not decided.claimed:
        message.state = decided.state
        if decided.next_attempt_at is not None:
            message.next_attempt_at = decided.next_attempt_at
        if decided.error is not None:
            message.error = decided.error
        return None
    assert decided.rendered is not None
    # Only a message that goes out counts as an attempt (deferrals and refusals do not).
    message.attempts += 1
    message.state = MessageState.CLAIMED
    message.request_at = None  # set when this attempt's request leaves (`request_left`)
    return Prepared(message, member, decided.rendered)


def is_due(message: MessageRow, now: datetime) -> bool:
    return message.state == MessageState.PENDING and (
        message.next_attempt_at is None or message.next_attempt_at <= now
    )


#: The `messages` table: the statements below are Core's (their callers hold no objects
#: of these rows), their ids one array parameter on PostgreSQL (`among`).
_MESSAGES = cast(Table, Message.__table__)
_NOW = bindparam("now", type_=Message.updated_at.type)
#: Claimed messages whose request leaves now (those still claimed by this attempt).
_LEAVING = (
    update(_MESSAGES)
    .where(
        among(_MESSAGES.c.id, "ids"),
        _MESSAGES.c.state == MessageState.CLAIMED,
        _MESSAGES.c.request_at.is_(None),
    )
    .values(request_at=_NOW, updated_at=_NOW)
    .returning(_MESSAGES.c.id)
)
#: Those of some messages still claimed.
_STILL_CLAIMED = select(Message.id).where(
    among(Message.id, "ids"), Message.state == MessageState.CLAIMED
)
#: Claimed messages a provider webhook reported on already: sent.
_CONFIRMED = (
    update(_MESSAGES)
    .where(
        among(_MESSAGES.c.id, "ids"),
        _MESSAGES.c.state == MessageState.CLAIMED,
        _MESSAGES.c.provider_status.is_not(None),
    )
    .values(state=MessageState.SENT, sent_at=_NOW, error=None, updated_at=_NOW)
    .returning(_MESSAGES.c.id)
)


def request_left(app: App, ids: list[int]) -> set[int]:
    """Record, and commit, that the request for these claimed messages is about to leave.

    Returns the ids still claimed by this attempt: a claim whose lease lapsed went
    back to pending (`settle_stale`) and must not be sent from here.
    """
    now = app.clock.now()
    with app.database.transaction() as session:
        marked = session.scalars(_LEAVING, {"ids": ids, "now": now}).all()
    return set(marked)


def record(session: Session, app: App, ids: list[int], outcome: Outcome, now: datetime) -> str:
    """Apply one provider outcome to the claimed messages of its request; their new state."""
    if outcome.kind in (OutcomeKind.RETRY, OutcomeKind.UNKNOWN):
        ids = _confirmed_first(session, ids, now)
        if not ids:
            return MessageState.SENT
    if outcome.kind == OutcomeKind.RETRY:
        still_claimed = session.scalars(_STILL_CLAIMED, {"ids": ids}).all()
        if not still_claimed:
            return _settled_meanwhile(session, ids)
        return retry_later(session, app.settings, ids, outcome, now)
    values: dict[str, Any] = {"updated_at": now}
    if outcome.kind == OutcomeKind.SENT:
        state = MessageState.SENT
        values.update(sent_at=now, provider_id=outcome.provider_id, error=None)
    elif outcome.kind == OutcomeKind.UNKNOWN:
        state = MessageState.UNKNOWN
        values.update(sent_at=now, error=outcome.error)
    else:  # FAILED, OPTED_OUT
        state = MessageState.FAILED
        values.update(error=outcome.error)
    recorded = session.scalars(
        update(_MESSAGES)
        .where(among(_MESSAGES.c.id, "ids"), _MESSAGES.c.state == MessageState.CLAIMED)
        .values(state=state, **values)
        .returning(_MESSAGES.c.id),
        {"ids": ids},
    ).all()
    if not recorded:
        return _settled_meanwhile(session, ids)
    if outcome.kind == OutcomeKind.OPTED_OUT:
        for message in session.scalars(select(Message).where(Message.id.in_(ids))):
            _record_opt_out(session, message, now)
    log.info("message.outcome", extra={"messages": len(ids), "outcome": outcome.kind})
    return state


def _settled_meanwhile(session: Session, ids: list[int]) -> str:
    """The state of a request's messages that a provider webhook settled while it was out."""
    current = session.scalar(select(Message.state).where(Message.id == ids[0]))
    return str(current or MessageState.SENT)


def _confirmed_first(session: Session, ids: list[int], now: datetime) -> list[int]:
    """Mark sent the messages a provider webhook already reported on; the others' ids.

    The webhook can overtake our own answer (a status callback before the request
    returns): the provider's word proves the message left, so it is neither
    retried nor left unknown.
    """
    confirmed = session.scalars(_CONFIRMED, {"ids": ids, "now": now}).all()
    if confirmed:
        log.info("message.confirmed_first", extra={"messages": len(confirmed)})
    settled = set(confirmed)
    return [i for i in ids if i not in settled]


def _record_opt_out(session: Session, message: Message, now: datetime) -> None:
    """Twilio says the number sent STOP: no marketing SMS until START."""
    member = session.get(Member, message.member_id, with_for_update=True)
    if member is None or not member.phone:
        return
    record_consent(session, member, "sms", False, source="twilio:21610", at=now)
    insert_ignore(
        session,
        Suppression,
        [{"channel": "sms", "address": member.phone.lower(), "reason": "stop", "created_at": now}],
        ["channel", "address"],
    )
