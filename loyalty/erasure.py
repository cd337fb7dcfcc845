"""GDPR erasure: the member's personal data goes; what the law lets us keep stays.

Kept: the ledger (amounts, no personal data), the consent log and the
suppression list (proof of consent and the duty not to contact: a suppressed
address stays suppressed). Queued messages are cancelled and running journeys end.

What goes, besides the member row's personal fields:

- **events** of the member keep only `LEDGER_KEYS`, the payload keys the ledger and
  the built-in event types read (order id, total, currency, points, reward, survey
  kind and score, the referee's member id, the fraud verdict), and only with plain
  values naming nothing personal; everything else in the payload goes. A referrer's
  `referral.completed` event, and the journeys it started, lose what they say about
  the member (their first name). Event errors lose the address, number and names.
- **enrollments** of the member: the context (the event that started them, split
  and step notes) is blanked.
- **messages** stay as rows (state, ids, times, provider ids; no address or body is
  stored): their errors lose the member's address, number and names, and a CRM
  update loses the property values it was to push.
- **provider events** tied to the member (naming one of their messages, its SMS
  sid, their address or their number) keep only `PROVIDER_EVENT_KEYS`: the event
  kind, its time and the provider's ids. Address, number, body, IP and user agent go;
  webhooks arriving later about the member's messages are stored so from the start.
- **dead letters** of work about the member (their events, enrollments, messages,
  points, reward codes; alone or in a batch with others') keep actor and ids, and lose
  the error text; any other dead letter, CRM error or sync cursor error quoting the
  member's address or number has it redacted.
- **CRM links** lose the values last pushed and their error.
- **surveys** lose the comment (free text); the score stays.

The local outbox's copies of the member's messages are files of `channels/`, out of
this module's reach: `crm_sync.runs.erase_everywhere` asks its caller for the function
that removes them (`channels.outbox.erase_files`).

Not reached from here: what left the program (mail already in inboxes, provider
logs, the referrer's own messages that named the member).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import String, Text, cast, func, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from loyalty.event_types import INTERNAL_SOURCE
from loyalty.models import (
    CrmLink,
    DeadLetter,
    Enrollment,
    Event,
    Member,
    Message,
    ProviderEvent,
    Redemption,
    Referral,
    Survey,
    SyncCursor,
)
from loyalty.states import IN_FLIGHT, EnrollmentState, MessageState

__all__ = [
    "LEDGER_KEYS",
    "PROVIDER_EVENT_KEYS",
    "WORK_ABOUT",
    "erase_member",
    "erased_provider_payload",
]

#: Event payload keys an erased member's events keep (what the ledger and the built-in
#: event types read); values are kept only when plain (number, flag or short text).
LEDGER_KEYS = frozenset(
    {
        "order_id",
        "total",
        "currency",
        "points",
        "reward",
        "kind",
        "score",
        "category",
        "survey_id",
        "referee",
        "fraud_verdict",
    }
)

#: Provider webhook fields kept on an erased member's provider events: the kind of
#: event, its time and the provider's ids (SendGrid, then Twilio).
PROVIDER_EVENT_KEYS = frozenset(
    {
        "event",
        "timestamp",
        "type",
        "status",
        "sg_event_id",
        "sg_message_id",
        "message_id",
        "MessageSid",
        "SmsSid",
        "SmsMessageSid",
        "MessageStatus",
        "SmsStatus",
        "ErrorCode",
        "AccountSid",
        "ApiVersion",
        "NumSegments",
        "NumMedia",
    }
)

#: Worker actors whose first argument names the member's data: the actor names of
#: `automations.runtime.actors`, and which of the member's ids each one takes. A batch
#: actor's first argument is a list of such ids, the member's among others'.
WORK_ABOUT = {
    "process_event": "events",
    "process_events": "events",
    "run_enrollment": "enrollments",
    "run_enrollments": "enrollments",
    "deliver_message": "messages",
    "deliver_messages": "messages",
    "expire_points": "member",
    "create_reward_code": "redemptions",
    "create_reward_codes": "redemptions",
}

#: What stands where personal data was cut out of a text.
REDACTED = "[erased]"
#: The error text of a dead letter about an erased member.
ERASED_ERROR = "[erased with the member's personal data]"
#: Longest plain text value an erased member's event keeps.
MAX_KEPT_TEXT = 255
#: Ids per IN (…) list.
CHUNK = 500


class _Redactor:
    """Finds and cuts out one member's address, number and names in text and JSON."""

    def __init__(self, member: Member) -> None:
        self.contacts = [v.strip() for v in (member.email, member.phone) if v and v.strip()]
        names = [v.strip() for v in (member.first_name, member.last_name) if v and v.strip()]
        parts = [re.escape(v) for v in self.contacts]
        # Names only as whole words: "Ann" is cut from "Ask for Ann", not from "Annual".
        parts += [rf"(?<!\w){re.escape(v)}(?!\w)" for v in names]
        self.contacts_only = _pattern([re.escape(v) for v in self.contacts])
        self.everything = _pattern(parts)

    def text(self, value: str | None, *, names: bool = True) -> str | None:
        pattern = self.everything if names else self.contacts_only
        if value is None or pattern is None:
            return value
        return pattern.sub(REDACTED, value)

    def mentions(self, value: Any) -> bool:
        """Whether a JSON value holds the member's address, number or a name anywhere."""
        if self.everything is None:
            return False
        if isinstance(value, str):
            return self.everything.search(value) is not None
        if isinstance(value, dict):
            return any(self.mentions(k) or self.mentions(v) for k, v in value.items())
        if isinstance(value, list):
            return any(self.mentions(v) for v in value)
        return False

    def without_mentions(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in payload.items() if not self.mentions(k) and not self.mentions(v)}


def _pattern(parts: list[str]) -> re.Pattern[str] | None:
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


def _chunks(values: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def erase_member(session: Session, member: Member, *, now: datetime) -> dict[str, int]:
    """Erase the member's personal data (see the module); returns what stopped and changed.

    Keys: messages_cancelled, enrollments_ended, events_scrubbed, provider_events_scrubbed,
    dead_letters_scrubbed. Running it again changes nothing more.
    """
    redactor = _Redactor(member)  # before the fields it looks for are blanked
    for field in (
        "email",
        "phone",
        "first_name",
        "last_name",
        "birth_year",
        "birth_month",
        "birth_day",
        "time_zone",
        "locale",
    ):
        setattr(member, field, None)
    member.attributes = {}
    member.import_digest = None  # a digest of the personal data last imported
    member.email_consent = member.sms_consent = False
    member.erased_at = member.updated_at = now
    messages = session.execute(
        update(Message)
        .where(
            Message.member_id == member.id,
            Message.state.in_((MessageState.PENDING, MessageState.DEFERRED, MessageState.CLAIMED)),
        )
        .values(state=MessageState.SUPPRESSED, error="erased", updated_at=now)
    )
    # Survey comments are free text and may name the member; the scores stay.
    session.execute(update(Survey).where(Survey.member_id == member.id).values(comment=None))
    enrollments = session.execute(
        update(Enrollment)
        .where(Enrollment.member_id == member.id, Enrollment.state.in_(IN_FLIGHT))
        .values(state=EnrollmentState.EXITED, exit_reason="erased", exited_at=now, next_run_at=None)
    )
    session.execute(update(Enrollment).where(Enrollment.member_id == member.id).values(context={}))
    session.execute(
        update(CrmLink).where(CrmLink.member_id == member.id).values(pushed_values=None, error=None)
    )
    events = _scrub_events(session, member, redactor)
    _scrub_messages(session, member, redactor)
    provider_events = _scrub_provider_events(session, member, redactor)
    dead_letters = _scrub_dead_letters(session, member, redactor)
    _redact_column(session, SyncCursor.last_error, redactor)
    return {
        "messages_cancelled": int(messages.rowcount or 0),  # type: ignore[attr-defined]
        "enrollments_ended": int(enrollments.rowcount or 0),  # type: ignore[attr-defined]
        "events_scrubbed": events,
        "provider_events_scrubbed": provider_events,
        "dead_letters_scrubbed": dead_letters,
    }


def _plain(value: Any) -> bool:
    if isinstance(value, bool | int | float) or value is None:
        return True
    return isinstance(value, str) and len(value) <= MAX_KEPT_TEXT


def _kept_value(value: Any, redactor: _Redactor) -> bool:
    return _plain(value) and not redactor.mentions(value)


def erased_provider_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """What a provider event about an erased member keeps: its kind, time and ids.

    Erasure scrubs the stored ones with it; webhooks store late ones (an email
    opened after the erasure, say) this way from the start.
    """
    return {k: v for k, v in payload.items() if k in PROVIDER_EVENT_KEYS and _plain(v)}


def _scrub_events(session: Session, member: Member, redactor: _Redactor) -> int:
    changed = 0
    for event in session.scalars(select(Event).where(Event.member_id == member.id)):
        payload = {
            k: v for k, v in event.payload.items() if k in LEDGER_KEYS and _kept_value(v, redactor)
        }
        error = redactor.text(event.error)
        if payload != event.payload or error != event.error:
            event.payload, event.error = payload, error
            changed += 1
    # The referrer's referral.completed event names the member who was referred.
    referrals = session.execute(
        select(Referral.id, Referral.referrer_id).where(Referral.referee_id == member.id)
    ).all()
    keys = [f"referral:{referral.id}" for referral in referrals]
    for part in _chunks(keys):
        query = select(Event).where(Event.source == INTERNAL_SOURCE, Event.external_id.in_(part))
        for event in session.scalars(query):
            payload = redactor.without_mentions(event.payload)
            if payload != event.payload:
                event.payload = payload
                changed += 1
    referrers = sorted({referral.referrer_id for referral in referrals})
    for part in _chunks(referrers):
        # The journeys that event started hold a copy of it.
        for enrollment in session.scalars(select(Enrollment).where(Enrollment.member_id.in_(part))):
            if redactor.mentions(enrollment.context):
                enrollment.context = _without_mentions_deep(enrollment.context, redactor)
    return changed


def _without_mentions_deep(value: dict[str, Any], redactor: _Redactor) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if redactor.mentions(key):
            continue
        if isinstance(item, dict):
            out[key] = _without_mentions_deep(item, redactor)
        elif not redactor.mentions(item):
            out[key] = item
    return out


def _scrub_messages(session: Session, member: Member, redactor: _Redactor) -> None:
    for message in session.scalars(select(Message).where(Message.member_id == member.id)):
        error = redactor.text(message.error)
        if error != message.error:
            message.error = error
        # A CRM update's values, a journey call's body and a CRM task's texts were
        # rendered for this member (names, say).
        decisions = dict(message.decisions)
        if "properties" in decisions:
            decisions["properties"] = {}
        if "body" in decisions:
            decisions["body"] = "{}"
        if "task" in decisions:
            decisions["task"] = {**decisions["task"], "subject": "", "body": ""}
        if decisions != message.decisions:
            message.decisions = decisions


def _scrub_provider_events(session: Session, member: Member, redactor: _Redactor) -> int:
    sent = session.execute(
        select(Message.id, Message.channel, Message.provider_id).where(
            Message.member_id == member.id, Message.channel.in_(("email", "sms"))
        )
    ).all()
    email_ids = [str(m.id) for m in sent if m.channel == "email"]
    sms_ids = [m.provider_id for m in sent if m.channel == "sms" and m.provider_id]
    conditions: list[Any] = []
    for part in _chunks(email_ids):
        field = cast(ProviderEvent.payload["message_id"].as_string(), String)
        conditions.append((ProviderEvent.provider == "sendgrid") & field.in_(part))
    for part in _chunks(sms_ids):
        field = cast(ProviderEvent.payload["MessageSid"].as_string(), String)
        conditions.append((ProviderEvent.provider == "twilio") & field.in_(part))
    text = func.lower(cast(ProviderEvent.payload, Text))
    for contact in redactor.contacts:
        conditions.append(text.contains(contact.lower(), autoescape=True))
        if not contact.isascii():  # JSON stored as text may escape non-ASCII characters
            escaped = json.dumps(contact.lower())[1:-1]
            conditions.append(text.contains(escaped, autoescape=True))
    if not conditions:
        return 0
    changed = 0
    for event in session.scalars(select(ProviderEvent).where(or_(*conditions))):
        payload = {
            k: v
            for k, v in erased_provider_payload(event.payload).items()
            if not redactor.mentions(v)
        }
        if payload != event.payload:
            event.payload = payload
            changed += 1
    return changed


def _scrub_dead_letters(session: Session, member: Member, redactor: _Redactor) -> int:
    ids: dict[str, set[int]] = {
        "member": {member.id},
        "events": set(session.scalars(select(Event.id).where(Event.member_id == member.id))),
        "enrollments": set(
            session.scalars(select(Enrollment.id).where(Enrollment.member_id == member.id))
        ),
        "messages": set(session.scalars(select(Message.id).where(Message.member_id == member.id))),
        "redemptions": set(
            session.scalars(select(Redemption.id).where(Redemption.member_id == member.id))
        ),
    }
    changed = 0
    query = select(DeadLetter).where(DeadLetter.actor.in_(list(WORK_ABOUT)))
    for row in session.scalars(query):
        args = row.args.get("args") or []
        if ids[WORK_ABOUT[row.actor]].isdisjoint(_named_ids(args[0] if args else None)):
            continue
        scrubbed = {"args": list(args), "kwargs": {}}
        if row.error != ERASED_ERROR or row.args != scrubbed:
            row.error, row.args = ERASED_ERROR, scrubbed
            changed += 1
    # Other work may quote the member's address or number in its error (a CRM refusal).
    return changed + _redact_column(session, DeadLetter.error, redactor)


def _named_ids(first: Any) -> set[int]:
    """The ids a work message's first argument names: one id, or a batch's list of them."""
    values = first if isinstance(first, list) else [first]
    return {v for v in values if isinstance(v, int) and not isinstance(v, bool)}


def _redact_column(
    session: Session, column: InstrumentedAttribute[str | None], redactor: _Redactor
) -> int:
    """Cut the member's address and number out of one text column, wherever it quotes them."""
    if not redactor.contacts:
        return 0
    found = or_(
        *(func.lower(column).contains(c.lower(), autoescape=True) for c in redactor.contacts)
    )
    changed = 0
    for row in session.scalars(select(column.class_).where(found)):
        before = getattr(row, column.key)
        after = redactor.text(before, names=False)
        if after != before:
            setattr(row, column.key, after)
            changed += 1
    return changed
