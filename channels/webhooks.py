"""Apply provider webhooks to messages, suppressions and consent (DESIGN §6 items 4 and 6).

Every delivery is stored once per provider event id in `provider_events`; only a
first sighting changes anything, so providers may retry as often as they like.
The callers verify signatures and parse bodies; these functions only decide and
write, inside the caller's transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from channels.surveys import answer_sms_reply
from loyalty.consent import Channel, record_consent
from loyalty.db import insert_ignore
from loyalty.erasure import erased_provider_payload
from loyalty.models import Member, Message, Suppression
from loyalty.provider_events import (
    BatchOutcome,
    mark_applied,
    provider_event_id,
    store_provider_event,
)
from loyalty.settings import Settings
from loyalty.states import MessageState

__all__ = [
    "BatchOutcome",
    "InboundOutcome",
    "Keyword",
    "UnsubscribeOutcome",
    "apply_sendgrid_events",
    "apply_twilio_inbound",
    "apply_twilio_status",
    "phone_locale",
    "sms_keyword",
    "unsubscribe",
    "unsubscribe_erased",
    "unsubscribe_target",
]

log = logging.getLogger(__name__)

Keyword = Literal["stop", "start", "help"]

#: Whole-message SMS keywords (any case, trimmed), as carriers and Twilio define them.
SMS_KEYWORDS: dict[str, Keyword] = {
    **dict.fromkeys(
        ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"), "stop"
    ),
    **dict.fromkeys(("START", "YES", "UNSTOP"), "start"),
    **dict.fromkeys(("HELP", "INFO"), "help"),
}

#: SendGrid event → our provider status (bounces are "bounced" or "blocked" by type).
SENDGRID_STATUS = {
    **{e: e for e in ("processed", "deferred", "delivered", "dropped")},
    **{"open": "opened", "click": "clicked", "spamreport": "spam_reported"},
    **dict.fromkeys(("unsubscribe", "group_unsubscribe"), "unsubscribed"),
}

#: Twilio MessageStatus values we keep as the provider status.
TWILIO_STATUS = frozenset({"sent", "delivered", "undelivered", "failed", "read", "canceled"})

#: How far a status is along the way. Events arrive out of order: a later word
#: replaces the current one only when it ranks higher, or ranks the same and is newer.
STATUS_RANK = {
    **dict.fromkeys(("queued", "accepted", "processed"), 0),
    **dict.fromkeys(("sending", "sent", "deferred"), 1),
    **dict.fromkeys(
        ("delivered", "undelivered", "failed", "canceled", "bounced", "blocked", "dropped"), 2
    ),
    **dict.fromkeys(("opened", "read"), 3),
    "clicked": 4,
    **dict.fromkeys(("spam_reported", "unsubscribed"), 5),
}


@dataclass(frozen=True)
class InboundOutcome:
    """An inbound SMS: its keyword, whether it was new, and whether it changed anything."""

    keyword: Keyword | None
    duplicate: bool
    changed: bool
    member_ids: tuple[int, ...] = ()
    #: The survey this message answered, when it was a bare score replying to one.
    survey_id: int | None = None


@dataclass(frozen=True)
class UnsubscribeOutcome:
    message_id: int
    member_id: int
    changed: bool
    #: The member was erased: there is nobody left to unsubscribe, and nothing changed.
    erased: bool = False


# -- SendGrid ---------------------------------------------------------------------------


def apply_sendgrid_events(
    session: Session, events: Sequence[Mapping[str, Any]], *, now: datetime
) -> BatchOutcome:
    """Apply a parsed Event Webhook batch; events naming no message of ours are only stored."""
    outcome = BatchOutcome()
    messages, members = _lock_email_messages(session, events)
    for event in events:
        message = messages.get(_int(event.get("message_id")) or 0)
        kind = str(event.get("event") or "unknown")
        event_id = provider_event_id(event.get("sg_event_id"), event)
        erased = message is not None and members[message.member_id].erased_at is not None
        stored = erased_provider_payload(event) if erased else event
        about = message.id if message is not None else None
        if not store_provider_event(
            session,
            "sendgrid",
            event_id,
            kind,
            stored,
            now,
            applied=about is not None,
            message_id=about,
        ):
            outcome.duplicates += 1
        elif message is None:
            outcome.ignored += 1
        else:
            _apply_sendgrid(session, message, members[message.member_id], event, now)
            outcome.applied += 1
    return outcome


def _lock_email_messages(
    session: Session, events: Sequence[Mapping[str, Any]]
) -> tuple[dict[int, Message], dict[int, Member]]:
    # Rows are locked in id order so that concurrent batches cannot deadlock.
    ids = sorted({i for e in events if (i := _int(e.get("message_id"))) is not None})
    if not ids:
        return {}, {}
    query = select(Message).where(Message.id.in_(ids), Message.channel == "email")
    messages = {m.id: m for m in session.scalars(query.order_by(Message.id).with_for_update())}
    member_ids = sorted({m.member_id for m in messages.values()})
    by_id = select(Member).where(Member.id.in_(member_ids)).order_by(Member.id)
    members = {m.id: m for m in session.scalars(by_id.with_for_update())}
    return messages, members


def _apply_sendgrid(
    session: Session, message: Message, member: Member, event: Mapping[str, Any], now: datetime
) -> None:
    kind = str(event.get("event") or "")
    at = _event_time(event.get("timestamp"), now)
    provider_id = str(event.get("sg_message_id") or "").split(".", 1)[0] or None
    _reconcile(message, provider_id, at, now)
    status = SENDGRID_STATUS.get(kind)
    if kind == "bounce":
        status = "blocked" if event.get("type") == "blocked" else "bounced"
    if status is not None:
        _set_status(message, status, at, now)
    if kind in ("open", "click"):
        _engaged(message, kind, at)
    if kind in ("bounce", "dropped"):
        parts = ("sendgrid", kind, event.get("type"), event.get("status"))
        message.error = " ".join(str(p) for p in parts if p)
    address = str(event.get("email") or member.email or "").strip().lower()
    if status == "bounced" and address:
        _suppress(session, "email", address, "bounce", now, member.id)
    if kind == "spamreport":
        if address:
            _suppress(session, "email", address, "spam_report", now, member.id)
        _revoke(session, member, "email", "sendgrid:spamreport", at)
    elif kind in ("unsubscribe", "group_unsubscribe"):
        _revoke(session, member, "email", "sendgrid:unsubscribe", at)


# -- Twilio -----------------------------------------------------------------------------


def apply_twilio_status(
    session: Session, params: Mapping[str, str], *, message_id: int | None, now: datetime
) -> BatchOutcome:
    """Apply one status callback, deduplicated on (MessageSid, MessageStatus)."""
    sid, status = params["MessageSid"], params["MessageStatus"].lower()
    message = None
    if message_id is not None:
        message = session.scalar(
            select(Message)
            .where(Message.id == message_id, Message.channel == "sms")
            .with_for_update()
        )
    if message is not None and message.provider_id not in (None, sid):
        log.warning(
            "twilio.status_sid_mismatch", extra={"message_id": message.id, "status": status}
        )
        message = None
    outcome = BatchOutcome()
    applied = message is not None
    stored: Mapping[str, Any] = params
    if message is not None and _erased(session, message.member_id):
        stored = erased_provider_payload(params)
    about = message.id if message is not None else None
    if not store_provider_event(
        session, "twilio", f"{sid}:{status}", f"status.{status}", stored, now, applied, about
    ):
        outcome.duplicates += 1
        return outcome
    if message is None:
        outcome.ignored += 1
        return outcome
    _reconcile(message, sid, now, now)
    if status in TWILIO_STATUS:
        _set_status(message, status, now, now)
    error_code = params.get("ErrorCode")
    if error_code and status in ("undelivered", "failed"):
        message.error = f"twilio {error_code}"
    outcome.applied += 1
    return outcome


def sms_keyword(body: str | None) -> Keyword | None:
    """STOP, START or HELP when the whole message (any case, trimmed) is one of their words."""
    return SMS_KEYWORDS.get((body or "").strip().upper())


def apply_twilio_inbound(
    session: Session, params: Mapping[str, str], *, settings: Settings, now: datetime
) -> InboundOutcome:
    """Store an inbound SMS once per MessageSid; STOP and START change consent for the number.

    A bare score replying to an open SMS survey answers it (`channels.surveys`).
    """
    keyword = sms_keyword(params.get("Body"))
    kind = f"inbound.{keyword or 'message'}"
    # Plain messages stay unapplied (replies read them later) unless they answer a survey.
    applied = keyword is not None
    if not store_provider_event(
        session, "twilio", params["MessageSid"], kind, params, now, applied
    ):
        return InboundOutcome(keyword, duplicate=True, changed=False)
    phone = params["From"].strip()
    if keyword is None:
        answer = answer_sms_reply(session, phone, params.get("Body"), settings=settings, now=now)
        if answer is not None:
            mark_applied(session, "twilio", params["MessageSid"], now)
            return InboundOutcome(
                None,
                duplicate=False,
                changed=True,
                member_ids=(answer.member_id,),
                survey_id=answer.survey_id,
            )
    if keyword not in ("stop", "start"):
        return InboundOutcome(keyword, duplicate=False, changed=False)
    members = list(
        session.scalars(
            select(Member)
            .where(Member.phone == phone, Member.erased_at.is_(None))
            .order_by(Member.id)
            .with_for_update()
        )
    )
    granted = keyword == "start"
    source = f"sms:{keyword}"
    changed = False
    for member in members:
        changed |= record_consent(session, member, "sms", granted, source=source, at=now)
    if granted:
        removed = session.execute(
            delete(Suppression)
            .where(
                Suppression.channel == "sms",
                Suppression.address == phone,
                Suppression.reason == "stop",
            )
            .returning(Suppression.id)
        )
        changed |= removed.first() is not None
    else:
        changed |= _suppress(session, "sms", phone, "stop", now, None)
    member_ids = tuple(m.id for m in members)
    log.info(
        "sms.opt_in" if granted else "sms.opt_out",
        extra={"member_ids": list(member_ids), "changed": changed},
    )
    return InboundOutcome(keyword, duplicate=False, changed=changed, member_ids=member_ids)


def phone_locale(session: Session, phone: str) -> str | None:
    """The locale of the (first, not erased) member with this number: replies speak it."""
    return session.scalar(
        select(Member.locale)
        .where(Member.phone == phone.strip(), Member.erased_at.is_(None))
        .order_by(Member.id)
        .limit(1)
    )


# -- One-click unsubscribe --------------------------------------------------------------


def unsubscribe_target(session: Session, token: str) -> Message | None:
    """The message an unsubscribe link names, or None for an unknown token."""
    if not token or len(token) > 64:
        return None
    return session.scalar(select(Message).where(Message.unsubscribe_token == token))


def unsubscribe_erased(session: Session, message: Message) -> bool:
    """Whether the member an unsubscribe link names was erased (the page then names no one)."""
    return _erased(session, message.member_id)


def unsubscribe(session: Session, token: str, *, now: datetime) -> UnsubscribeOutcome | None:
    """Revoke the email marketing consent of the member a link names; harmless to repeat.

    An erased member's link changes nothing: their consent is already gone for good.
    """
    message = unsubscribe_target(session, token)
    if message is None:
        return None
    member = session.get(Member, message.member_id, with_for_update=True)
    if member is None or member.erased_at is not None:
        return UnsubscribeOutcome(message.id, message.member_id, False, erased=True)
    changed = _revoke(session, member, "email", "unsubscribe_link", now)
    return UnsubscribeOutcome(message.id, message.member_id, changed)


# -- shared steps -----------------------------------------------------------------------


def _reconcile(message: Message, provider_id: str | None, at: datetime, now: datetime) -> None:
    """A provider reporting on a message we could not confirm proves that it left.

    That is a message left unknown, or one whose request left while its worker has
    not recorded the answer yet (or never will: it died). The worker's own record
    then finds the row settled and changes nothing.
    """
    if message.provider_id is None and provider_id:
        message.provider_id = provider_id[:128]
    in_flight = message.state == MessageState.CLAIMED and message.request_at is not None
    if message.state == MessageState.UNKNOWN or in_flight:
        message.state = MessageState.SENT
        message.sent_at = message.sent_at or at
        message.updated_at = now
        log.info(
            "message.reconciled", extra={"message_id": message.id, "member_id": message.member_id}
        )


def _set_status(message: Message, status: str, at: datetime, now: datetime) -> None:
    current = STATUS_RANK.get(message.provider_status or "", -1)
    new = STATUS_RANK.get(status, -1)
    previous_at = message.provider_status_at
    if new > current or (new == current and (previous_at is None or at >= previous_at)):
        message.provider_status = status
        message.provider_status_at = at
        message.updated_at = now


def _engaged(message: Message, kind: str, at: datetime) -> None:
    """Keep the latest open and click (a click counts as an open: images may be blocked)."""
    if message.last_opened_at is None or at > message.last_opened_at:
        message.last_opened_at = at
    if kind == "click" and (message.last_clicked_at is None or at > message.last_clicked_at):
        message.last_clicked_at = at


def _suppress(
    session: Session, channel: str, address: str, reason: str, now: datetime, member_id: int | None
) -> bool:
    row = {"channel": channel, "address": address, "reason": reason, "created_at": now}
    added = insert_ignore(session, Suppression, [row], ["channel", "address"]) > 0
    if added:
        log.info(
            "suppression.added",
            extra={"channel": channel, "reason": reason, "member_id": member_id},
        )
    return added


def _revoke(session: Session, member: Member, channel: Channel, source: str, at: datetime) -> bool:
    changed = record_consent(session, member, channel, False, source=source, at=at)
    if changed:
        log.info(
            "consent.revoked", extra={"member_id": member.id, "channel": channel, "source": source}
        )
    return changed


def _erased(session: Session, member_id: int) -> bool:
    erased_at = session.scalar(select(Member.erased_at).where(Member.id == member_id))
    return erased_at is not None


def _event_time(value: object, default: datetime) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return default
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (ValueError, OverflowError, OSError):
        return default


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value < 2**63 else None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = int(value.strip())
        return number if 0 < number < 2**63 else None
    return None
