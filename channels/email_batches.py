"""Email to SendGrid in batches: messages that share a template leave in one request.

The emails of one journey step gather before they go (`send_email_batch`): the batch's
lead, its first due email, waits until the batch fills a request or none of its emails
has become due for EMAIL_BATCH_GATHER_MS while no member is due to run its step (or its
oldest waited EMAIL_BATCH_MAX_WAIT_MS), then claims up to 1,000 (PostgreSQL skips rows
another worker holds); the other emails' deliveries leave them to it
(`deliveries_needed`). `flush_emails` sends every due email now.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from channels.batch_facts import read_batch_facts
from channels.claims import Decided, Prepared, decide, is_due, record, request_left, uses_sendgrid
from channels.compose import message_headers
from channels.outcomes import measured
from channels.policy import MessageRow
from channels.sendgrid_sender import MAX_PERSONALIZATIONS, OutgoingEmail, SendGridSender, batches
from loyalty.app import App
from loyalty.db import among, update_rows
from loyalty.models import Enrollment, Member, Message
from loyalty.settings import Settings
from loyalty.states import EnrollmentState, MessageState

__all__ = [
    "Gathering",
    "deliveries_needed",
    "flush_emails",
    "gathering_wait",
    "send_email_batch",
]

#: Emails one flush sends at most (in several claims).
FLUSH_LIMIT = 5000
#: Emails claimed at once: what one SendGrid request carries.
CLAIM_BATCH = MAX_PERSONALIZATIONS
#: The shortest wait before a batch is looked at again after it went (rows another
#: worker held may still be due): no delivery spins on them.
REGATHER_SECONDS = 0.1


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
    def of(cls, message: MessageRow) -> _Batch:
        return cls(message.journey_id, message.step_id, message.template, message.purpose)

    def rows(self) -> list[ColumnElement[bool]]:
        return [
            Message.channel == "email",
            Message.journey_id.is_not_distinct_from(self.journey_id),
            Message.step_id.is_not_distinct_from(self.step_id),
            Message.template.is_not_distinct_from(self.template),
            Message.purpose == self.purpose,
        ]


#: What a delivery reads of a message to find its batch and whether it is due.
LOOKED_AT = (
    Message.id,
    Message.channel,
    Message.state,
    Message.next_attempt_at,
    Message.journey_id,
    Message.step_id,
    Message.template,
    Message.purpose,
)
#: `LOOKED_AT` of some messages' emails (built once: the ids go as a parameter).
_EMAILS_AMONG = select(*LOOKED_AT).where(among(Message.id, "ids"), Message.channel == "email")


def deliveries_needed(app: App, message_ids: list[int]) -> list[int]:
    """Of messages queued together, those whose delivery has work to do: the emails of one
    SendGrid batch need only their first due one (its delivery gathers the batch or wakes
    its lead); other emails not due are left out; every other message stays."""
    if len(message_ids) < 2 or not uses_sendgrid(app):
        return message_ids
    now = app.clock.now()
    with app.database.sessions() as session:
        emails = session.execute(_EMAILS_AMONG, {"ids": message_ids}).all()
    firsts: dict[_Batch, int] = {}
    for message in sorted(emails, key=lambda m: int(m.id)):
        if is_due(message, now):
            firsts.setdefault(_Batch.of(message), message.id)
    skipped = {m.id for m in emails} - set(firsts.values())
    return [i for i in message_ids if i not in skipped]


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
    app: App, message_id: int, loaded: MessageRow | None = None
) -> str | Gathering | None:
    """Send the due emails of this email's batch once gathered, up to CLAIM_BATCH a request.

    Only the batch's lead waits for it (answers `Gathering` until it goes); the other
    emails' deliveries do nothing, since the lead's takes them, or wake the lead when the
    batch is ready. Once it went, emails that became due meanwhile make a new batch,
    named by its lead. Otherwise the answer is this email's state (None when it was not
    due).
    """
    with app.database.sessions() as session:
        message = loaded
        if message is None:
            message = session.execute(select(*LOOKED_AT).where(Message.id == message_id)).first()
        if message is None or message.channel != "email" or not is_due(message, app.clock.now()):
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
    went: set[int] = set()  # the emails this delivery's requests sent
    while look is not None and look[1] == 0 and sent < FLUSH_LIMIT:
        outgoing, claimed = _send_claimed(app, sender, batch, look[0], went)
        sent += outgoing
        if claimed == 0:  # another worker holds the lead: its delivery sends the batch
            return Gathering(look[0], REGATHER_SECONDS)
        with app.database.sessions() as session:
            look = _look(session, app, batch)
            if look is None:
                if message_id in went:
                    return MessageState.SENT
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
    app: App,
    sender: SendGridSender,
    batch: _Batch | None,
    lead: int | None,
    went: set[int] | None = None,
) -> tuple[int, int]:
    """Claim up to CLAIM_BATCH due emails (of `batch` from its `lead`, or any) and send them.

    Returns how many went out and how many rows the claim looked at; `went` gets the
    emails their request sent.
    """
    requests, claimed = _claim_emails(app, CLAIM_BATCH, batch, lead)
    for position, request in enumerate(requests):
        if position > 0:  # the first request's leaving was committed with the claim
            left = request_left(app, [e.message_id for e in request])
            request = [e for e in request if e.message_id in left]
            if not request:
                continue
        outcome = measured("sendgrid", functools.partial(sender.send, request))
        ids = [e.message_id for e in request]
        with app.database.transaction() as session:
            state = record(session, app, ids, outcome, app.clock.now())
        if went is not None and state == MessageState.SENT:
            went.update(ids)
    return sum(len(r) for r in requests), claimed


#: What a claim reads of its emails (the rows it locks), and of their members.
_CLAIMED = (
    Message.id,
    Message.member_id,
    Message.enrollment_id,
    Message.journey_id,
    Message.step_id,
    Message.channel,
    Message.purpose,
    Message.template,
    Message.decisions,
    Message.unsubscribe_token,
)
_MEMBERS = select(Member.__table__).where(among(Member.id, "ids"))


def _claim_emails(
    app: App, limit: int, batch: _Batch | None = None, lead: int | None = None
) -> tuple[list[list[OutgoingEmail]], int]:
    """Claim up to `limit` due emails; the requests that take them, and how many rows were
    looked at.

    On PostgreSQL rows another worker is claiming are skipped, not waited for. A batch is
    claimed only while its lead is still due and free: two deliveries of one batch never
    split it into two requests. The first request's leaving is recorded with the claim
    (its request goes right after the commit, as it would after `request_left`'s). The
    rows are read and written as columns (no ORM objects): the claim is most of an
    email's cost.
    """
    now = app.clock.now()
    outgoing: list[OutgoingEmail] = []
    with app.database.transaction() as session:
        rows = batch.rows() if batch is not None else [Message.channel == "email"]
        if lead is not None:
            # From the lead on, it first: a lead another worker holds (or that went) is
            # not among the rows, and then this delivery claims nothing.
            rows.append(Message.id >= lead)
        query = select(*_CLAIMED).where(*rows, *_due_rows(now)).order_by(Message.id).limit(limit)
        if not app.database.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        claimed = session.execute(query).all()
        if lead is not None and (not claimed or claimed[0].id != lead):
            return [], 0
        if not claimed:
            return [], 0
        # Members are locked in id order, so two batches that share members never deadlock.
        members = session.execute(
            _MEMBERS.order_by(Member.id).with_for_update(),
            {"ids": sorted({m.member_id for m in claimed})},
        ).all()
        by_id = {m.id: m for m in members}
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
        decided: dict[int, Decided] = {}
        for message in claimed:
            member = by_id[message.member_id]
            decided[message.id] = made = decide(
                session, app, message, member, now, pending=taken[member.id], facts=facts
            )
            if made.claimed and made.rendered is not None:
                taken[member.id] += 1
                outgoing.append(_outgoing_email(app, Prepared(message, member, made.rendered)))
        requests = batches(outgoing)
        leaving = {e.message_id for e in requests[0]} if requests else set()
        _store_claims(session, decided, leaving, now)
    return requests, len(claimed)


def _store_claims(
    session: Session, decided: dict[int, Decided], leaving: set[int], now: datetime
) -> None:
    """Write what the claim decided, in a statement for each kind of outcome: the claimed
    emails (an attempt counted; their request's leaving recorded when it goes first), the
    deferred and the refused (as `claims.prepare` leaves a row)."""
    claimed: list[dict[str, Any]] = []
    deferred: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    for message_id, made in decided.items():
        row: dict[str, Any] = {"id": message_id, "state": made.state, "decisions": made.decisions}
        if made.claimed:
            request_at = now if message_id in leaving else None
            claimed.append({**row, "locale": made.locale, "request_at": request_at})
        elif made.state == MessageState.DEFERRED:
            deferred.append({**row, "next_attempt_at": made.next_attempt_at})
        else:
            refused.append({**row, "error": made.error})
    update_rows(session, Message, claimed, {"updated_at": now, "attempts": Message.attempts + 1})
    update_rows(session, Message, deferred, {"updated_at": now})
    update_rows(session, Message, refused, {"updated_at": now})


def _outgoing_email(app: App, prepared: Prepared) -> OutgoingEmail:
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
