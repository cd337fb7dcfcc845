"""Delivering queued messages: claim, check the contact policy, render, send, record.

SMS go one by one (Twilio, paced per sender); email is claimed in batches so
messages that share a template leave in one SendGrid request. The emails of one
journey step gather before they go (`send_email_batch`): the batch's lead, its first
due email, waits until the batch fills a request or none of its emails has become
due for EMAIL_BATCH_GATHER_MS while no member is due to run its step (or its oldest
waited EMAIL_BATCH_MAX_WAIT_MS), then claims up to 1,000 (PostgreSQL skips rows
another worker holds); the other emails' deliveries leave them to it. Without
provider credentials, "send" writes to the local outbox. The data a template
sees is built when the message goes out, so amounts such as expiring points
are the ledger's at sending time.

State machine (`loyalty.states.MessageState`): pending → claimed → sent |
unknown | failed, or suppressed, or deferred (quiet hours) → pending. A
retriable failure returns the message to pending with a `next_attempt_at` that
backs off exponentially (never sooner than the provider's Retry-After); after
SEND_MAX_ATTEMPTS tries it fails for good and is dead-lettered, so that
`loyalty dlq replay` can try it again (`retry_failed`). A lost response makes
it `unknown`, settled by provider webhooks or given up after UNKNOWN_EXPIRY_HOURS.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.orm import Session

from channels import outbox, policy
from channels.batch_facts import BatchFacts, read_batch_facts
from channels.compose import message_headers, render_for, with_compliance
from channels.outcomes import Outcome, OutcomeKind, measured
from channels.render import Rendered, RenderError
from channels.retries import retry_later
from channels.segments import measure
from channels.sendgrid_sender import MAX_PERSONALIZATIONS, OutgoingEmail, SendGridSender, batches
from channels.twilio_sender import OutgoingSms, TwilioSender
from loyalty.app import App
from loyalty.consent import record_consent
from loyalty.db import insert_ignore
from loyalty.members import member_zone
from loyalty.models import Enrollment, Member, Message, Suppression
from loyalty.settings import Settings
from loyalty.states import EnrollmentState, MessageState

__all__ = [
    "Gathering",
    "deliver",
    "deliveries_needed",
    "flush_emails",
    "gathering_wait",
    "request_left",
    "send_email_batch",
    "settle_stale",
]

log = logging.getLogger(__name__)

#: Emails one flush sends at most (in several claims).
FLUSH_LIMIT = 5000
#: Emails claimed at once: what one SendGrid request carries.
CLAIM_BATCH = MAX_PERSONALIZATIONS
#: A claim whose request has not left after this long returns to pending (its worker died
#: or stalled before sending: nothing reached the provider).
CLAIM_LEASE = timedelta(minutes=2)
#: How long a sender's shared window pauses after a 429 that named no Retry-After.
THROTTLE_PAUSE_SECONDS = 1.0
#: A request that left with no outcome recorded after this long is possibly sent: unknown.
CLAIM_TIMEOUT = timedelta(minutes=10)


def uses_sendgrid(app: App) -> bool:
    return bool(app.settings.sendgrid_api_key)


def uses_twilio(app: App) -> bool:
    return bool(app.settings.twilio_account_sid and app.settings.twilio_auth_token)


@dataclass
class _Prepared:
    message: Message
    member: Member
    rendered: Rendered


def _prepare(
    session: Session,
    app: App,
    message: Message,
    now: datetime,
    taken: Counter[int] | None = None,
    facts: BatchFacts | None = None,
) -> _Prepared | None:
    """Policy and rendering for one locked, pending message; None when it does not go now.

    `taken` counts messages already claimed for each member in this batch (not yet
    flushed), so frequency caps hold inside a batch too; `facts` is what the batch read
    for all its messages.
    """
    # A batch locks its members up front; a single send locks its one member here.
    member = session.get(Member, message.member_id, with_for_update=taken is None)
    assert member is not None
    message.updated_at = now
    decision = policy.check(
        session,
        member,
        message,
        settings=app.settings,
        now=now,
        zone=member_zone(member, app.settings),
        pending=taken[member.id] if taken is not None else 0,
        known=facts.policy if facts is not None else None,
    )
    message.decisions = {**message.decisions, "decision": decision.reason or policy.SEND}
    if decision.verdict == MessageState.DEFERRED:
        message.state = MessageState.DEFERRED
        message.next_attempt_at = decision.until
        message.decisions = {
            **message.decisions,
            "deferred_from": message.decisions.get("deferred_from") or now.isoformat(),
        }
        return None
    if not decision.allowed:
        message.state, message.error = decision.verdict, decision.reason
        return None
    try:
        rendered = render_for(
            session,
            app,
            message,
            member,
            now,
            journeys=facts.journeys if facts is not None else None,
            fields=facts.members[member.id] if facts is not None else None,
        )
    except RenderError as exc:
        message.state, message.error = MessageState.FAILED, f"render: {exc}"
        log.warning("message.render_failed", extra={"message_id": message.id})
        return None
    message.locale = rendered.locale
    if message.purpose == "marketing":
        rendered = with_compliance(session, app, message, rendered)
    if message.channel == "sms":
        size = measure(rendered.body)
        message.segments = size.segments
        message.cost = size.cost(app.settings.sms_price_per_segment)
        limit = message.decisions.get("max_segments")
        if limit and size.segments > limit:
            message.state = MessageState.FAILED
            message.error = f"too_many_segments: {size.segments} > {limit} ({size.encoding})"
            return None
    # Only a message that goes out counts as an attempt (deferrals and refusals do not).
    message.attempts += 1
    message.state = MessageState.CLAIMED
    message.request_at = None  # set when this attempt's request leaves (`request_left`)
    return _Prepared(message, member, rendered)


def deliver(app: App, message_id: int, loaded: Message | None = None) -> str | Gathering | None:
    """Deliver one message if it is due; returns its new state (None: nothing to do here).

    An email to SendGrid may answer `Gathering` instead: its batch is not complete yet,
    and this message's delivery is to run again after the wait it names. `loaded` is the
    row as the caller just read it, if it did.
    """
    if loaded is None:
        with app.database.sessions() as session:
            loaded = session.get(Message, message_id)
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
            if message is None or not _due(message, now):
                return None
            prepared = _prepare(session, app, message, now)
            if prepared is None:
                return message.state
            sms = OutgoingSms(message.id, prepared.member.phone or "", prepared.rendered.body)
        if not request_left(app, [message_id]):
            return None  # the claim lapsed (this worker stalled) and is another's now
        outcome = measured("twilio", functools.partial(sender.send_now, sms))
    if outcome.throttled:
        sender.pause(outcome.retry_after or THROTTLE_PAUSE_SECONDS)
    with app.database.transaction() as session:
        return _record(session, app, [message_id], outcome, app.clock.now())


def deliveries_needed(app: App, message_ids: list[int]) -> list[int]:
    """Of messages queued together, those whose delivery has work to do: the emails of one
    SendGrid batch need only their first due one (its delivery gathers the batch or wakes
    its lead); other emails not due are left out; every other message stays."""
    if len(message_ids) < 2 or not uses_sendgrid(app):
        return message_ids
    now = app.clock.now()
    with app.database.sessions() as session:
        emails = session.scalars(
            select(Message).where(Message.id.in_(message_ids), Message.channel == "email")
        ).all()
    firsts: dict[_Batch, int] = {}
    for message in sorted(emails, key=lambda m: m.id):
        if _due(message, now):
            firsts.setdefault(_Batch.of(message), message.id)
    skipped = {m.id for m in emails} - set(firsts.values())
    return [i for i in message_ids if i not in skipped]


def _deliver_locally(app: App, message_id: int) -> str | None:
    """Write the message to the local outbox (no provider configured for its channel)."""
    now = app.clock.now()
    with app.database.transaction() as session:
        message = session.get(Message, message_id, with_for_update=True)
        if message is None or not _due(message, now):
            return None
        prepared = _prepare(session, app, message, now)
        if prepared is None:
            return message.state
        message.provider_id = _write(app, message, prepared.member, prepared.rendered, now)
        message.state, message.sent_at = MessageState.SENT, now
        return message.state


def request_left(app: App, ids: list[int]) -> set[int]:
    """Record, and commit, that the request for these claimed messages is about to leave.

    Returns the ids still claimed by this attempt: a claim whose lease lapsed went
    back to pending (`settle_stale`) and must not be sent from here.
    """
    now = app.clock.now()
    with app.database.transaction() as session:
        marked = session.scalars(
            update(Message)
            .where(
                Message.id.in_(ids),
                Message.state == MessageState.CLAIMED,
                Message.request_at.is_(None),
            )
            .values(request_at=now, updated_at=now)
            .returning(Message.id)
        ).all()
    return set(marked)


def _due(message: Message, now: datetime) -> bool:
    return message.state == MessageState.PENDING and (
        message.next_attempt_at is None or message.next_attempt_at <= now
    )


@dataclass(frozen=True)
class Gathering:
    """The due emails of a batch are still coming: deliver `message_id` again in `seconds`."""

    message_id: int
    seconds: float


@dataclass(frozen=True)
class _Batch:
    """Emails that may share a SendGrid request: one journey step's template and purpose.

    One step makes the same categories, the same kind of content (dynamic template or
    rendered body) and the same unsubscribe group for all its messages; `batches` splits
    what one claim of it holds further where a request would not take them together
    (a dynamic template per locale, a body too large to share).
    """

    journey_id: str | None
    step_id: str | None
    template: str | None
    purpose: str

    @classmethod
    def of(cls, message: Message) -> _Batch:
        return cls(message.journey_id, message.step_id, message.template, message.purpose)

    def rows(self) -> list[ColumnElement[bool]]:
        return [
            Message.channel == "email",
            Message.journey_id.is_not_distinct_from(self.journey_id),
            Message.step_id.is_not_distinct_from(self.step_id),
            Message.template.is_not_distinct_from(self.template),
            Message.purpose == self.purpose,
        ]


#: The shortest wait before a batch is looked at again after it went (rows another
#: worker held may still be due): no delivery spins on them.
REGATHER_SECONDS = 0.1


def _due_rows(now: datetime) -> list[ColumnElement[bool]]:
    return [
        Message.state == MessageState.PENDING,
        or_(Message.next_attempt_at.is_(None), Message.next_attempt_at <= now),
    ]


def gathering_wait(
    count: int, oldest: datetime, newest: datetime, now: datetime, settings: Settings
) -> float:
    """Seconds a batch of `count` due emails waits for more of its kind; 0: it goes now.

    It goes once it fills a request, once none of its emails has become due for
    EMAIL_BATCH_GATHER_MS (the step run that made them is over), or once its oldest
    has waited EMAIL_BATCH_MAX_WAIT_MS (a steady stream still goes out).
    """
    if count >= CLAIM_BATCH:
        return 0.0
    quiet = newest + timedelta(milliseconds=settings.email_batch_gather_ms)
    cap = oldest + timedelta(milliseconds=settings.email_batch_max_wait_ms)
    return max(0.0, (min(quiet, cap) - now).total_seconds())


def _look(session: Session, app: App, batch: _Batch) -> tuple[int, float] | None:
    """The lead of a batch's due emails (the first by id) and how long it waits; None: none."""
    now = app.clock.now()
    became_due = func.coalesce(Message.next_attempt_at, Message.created_at)
    count, lead, oldest, newest = session.execute(
        select(
            func.count(), func.min(Message.id), func.min(became_due), func.max(became_due)
        ).where(*batch.rows(), *_due_rows(now))
    ).one()
    if lead is None:
        return None
    wait = gathering_wait(int(count), oldest, newest, now, app.settings)
    if wait == 0 and _still_making(session, app, batch, int(count), oldest, now):
        # The step's run is not over (a busy machine may pause between its batches
        # longer than the quiet time): look again after another quiet time.
        wait = app.settings.email_batch_gather_ms / 1000
    return int(lead), wait


def _still_making(
    session: Session, app: App, batch: _Batch, count: int, oldest: datetime, now: datetime
) -> bool:
    """Whether members due to run the batch's step may still add emails to it.

    Only while the batch gathers at all, has room and its oldest has not waited its
    longest: a run that stalls never holds its emails past EMAIL_BATCH_MAX_WAIT_MS.
    """
    settings = app.settings
    if settings.email_batch_gather_ms == 0 or count >= CLAIM_BATCH or batch.journey_id is None:
        return False
    if oldest + timedelta(milliseconds=settings.email_batch_max_wait_ms) <= now:
        return False
    due = (
        select(Enrollment.id)
        .where(
            Enrollment.journey_id == batch.journey_id,
            Enrollment.state == EnrollmentState.ACTIVE,
            Enrollment.current_step == batch.step_id,
            Enrollment.next_run_at <= now,
            Enrollment.parked_at.is_(None),
        )
        .limit(1)
    )
    return session.scalar(due) is not None


def send_email_batch(
    app: App, message_id: int, loaded: Message | None = None
) -> str | Gathering | None:
    """Send the due emails of this email's batch once gathered, up to CLAIM_BATCH a request.

    Only the batch's lead waits for it (answers `Gathering` until it goes); the other
    emails' deliveries do nothing, since the lead's takes them, or wake the lead when the
    batch is ready. Once it went, emails that became due meanwhile make a new batch,
    named by its lead. Otherwise the answer is this email's state (None when it was not
    due).
    """
    with app.database.sessions() as session:
        message = loaded or session.get(Message, message_id)
        if message is None or message.channel != "email" or not _due(message, app.clock.now()):
            return None
        batch = _Batch.of(message)
        look = _look(session, app, batch)
    if look is None:
        return None  # settled meanwhile
    if look[0] != message_id:
        # The lead's delivery takes this one; a batch ready to go (full, or due again
        # after a retry) wakes it now.
        return Gathering(look[0], 0.0) if look[1] == 0 else None
    sender = SendGridSender(app.settings)
    sent = 0
    while look is not None and look[1] == 0 and sent < FLUSH_LIMIT:
        outgoing, claimed = _send_claimed(app, sender, batch, look[0])
        sent += outgoing
        if claimed == 0:  # another worker holds the lead: its delivery sends the batch
            return Gathering(look[0], REGATHER_SECONDS)
        with app.database.sessions() as session:
            look = _look(session, app, batch)
            if look is None:
                return session.scalar(select(Message.state).where(Message.id == message_id))
    return Gathering(look[0], max(look[1], REGATHER_SECONDS if sent else 0.0))


def flush_emails(app: App) -> int:
    """Send every due email now, in as few SendGrid requests as the limits allow.

    Claims only what the next requests carry (CLAIM_BATCH), records that each request
    left just before it is sent, and goes on until nothing is due or FLUSH_LIMIT
    emails went: a worker killed mid-way strands no more than one request's claims,
    and those return to pending when their lease lapses.
    """
    sender = SendGridSender(app.settings)
    sent = 0
    while sent < FLUSH_LIMIT:
        outgoing, claimed = _send_claimed(app, sender, None, None)
        sent += outgoing
        if claimed < CLAIM_BATCH:
            break
    return sent


def _send_claimed(
    app: App, sender: SendGridSender, batch: _Batch | None, lead: int | None
) -> tuple[int, int]:
    """Claim up to CLAIM_BATCH due emails (of `batch` from its `lead`, or any) and send them.

    Returns how many went out and how many rows the claim looked at.
    """
    outgoing, claimed = _claim_emails(app, CLAIM_BATCH, batch, lead)
    for request in batches(outgoing):
        left = request_left(app, [e.message_id for e in request])
        request = [e for e in request if e.message_id in left]
        if not request:
            continue
        outcome = measured("sendgrid", functools.partial(sender.send, request))
        with app.database.transaction() as session:
            _record(session, app, [e.message_id for e in request], outcome, app.clock.now())
    return len(outgoing), claimed


def _claim_emails(
    app: App, limit: int, batch: _Batch | None = None, lead: int | None = None
) -> tuple[list[OutgoingEmail], int]:
    """Claim up to `limit` due emails; those that go now, and how many rows were looked at.

    On PostgreSQL rows another worker is claiming are skipped, not waited for. A batch is
    claimed only while its lead is still due and free: two deliveries of one batch never
    split it into two requests.
    """
    now = app.clock.now()
    outgoing: list[OutgoingEmail] = []
    with app.database.transaction() as session:
        rows = batch.rows() if batch is not None else [Message.channel == "email"]
        if lead is not None:
            # From the lead on, it first: a lead another worker holds (or that went) is
            # not among the rows, and then this delivery claims nothing.
            rows.append(Message.id >= lead)
        query = select(Message).where(*rows, *_due_rows(now)).order_by(Message.id).limit(limit)
        if not app.database.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        claimed = list(session.scalars(query))
        if lead is not None and (not claimed or claimed[0].id != lead):
            return [], 0
        if not claimed:
            return [], 0
        # Members are locked in id order, so two batches that share members never deadlock.
        members = session.scalars(
            select(Member)
            .where(Member.id.in_({m.member_id for m in claimed}))
            .order_by(Member.id)
            .with_for_update()
        ).all()
        # What every message needs, in a few queries for the batch, not several per message.
        facts = read_batch_facts(
            session,
            claimed,
            members,
            "email",
            now=now,
            public_base_url=app.settings.public_base_url,
            default_zone=app.settings.default_time_zone,
        )
        taken: Counter[int] = Counter()
        with session.no_autoflush:  # one flush at the end, not one per message
            for message in claimed:
                prepared = _prepare(session, app, message, now, taken, facts)
                if prepared is not None:
                    taken[message.member_id] += 1
                    outgoing.append(_outgoing_email(app, prepared))
    return outgoing, len(claimed)


def _outgoing_email(app: App, prepared: _Prepared) -> OutgoingEmail:
    message, rendered = prepared.message, prepared.rendered
    template_id = message.decisions.get("template_id") if rendered.data is not None else None
    if isinstance(template_id, dict):
        language = rendered.locale.split("-")[0]
        template_id = (
            template_id.get(rendered.locale)
            or template_id.get(language)
            or template_id.get("en")
            or next(iter(template_id.values()))
        )
    return OutgoingEmail(
        message_id=message.id,
        to=prepared.member.email or "",
        subject=rendered.subject or "",
        html=rendered.body,
        text=rendered.text or "",
        headers=message_headers(app, message),
        categories=tuple(c for c in (message.journey_id, message.step_id) if c),
        template_id=template_id,
        template_data=rendered.data,
    )


def _record(session: Session, app: App, ids: list[int], outcome: Outcome, now: datetime) -> str:
    """Apply one provider outcome to the claimed messages of its request; their new state."""
    if outcome.kind in (OutcomeKind.RETRY, OutcomeKind.UNKNOWN):
        ids = _confirmed_first(session, ids, now)
        if not ids:
            return MessageState.SENT
    if outcome.kind == OutcomeKind.RETRY:
        still_claimed = session.scalars(
            select(Message.id).where(Message.id.in_(ids), Message.state == MessageState.CLAIMED)
        ).all()
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
        update(Message)
        .where(Message.id.in_(ids), Message.state == MessageState.CLAIMED)
        .values(state=state, **values)
        .returning(Message.id)
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
    confirmed = session.scalars(
        update(Message)
        .where(
            Message.id.in_(ids),
            Message.state == MessageState.CLAIMED,
            Message.provider_status.is_not(None),
        )
        .values(state=MessageState.SENT, sent_at=now, error=None, updated_at=now)
        .returning(Message.id)
    ).all()
    if confirmed:
        log.info("message.confirmed_first", extra={"messages": len(confirmed)})
    return [i for i in ids if i not in set(confirmed)]


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


def _write(app: App, message: Message, member: Member, rendered: Rendered, now: datetime) -> str:
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
