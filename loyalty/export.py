"""GDPR export: everything the program holds about one member, as one JSON document.

Sections: the member's profile and loyalty fields, the consent log, the points ledger,
events, journey enrollments, messages (with the bodies the local outbox kept: providers'
messages are not stored here), surveys, referrals, reward redemptions, CRM links with the
values last pushed, and the suppressions on the member's address and number.

Other people's data stays out: a referral names the other member by neither name nor
address, only by its role. Capability tokens (unsubscribe and survey links) stay out too:
they are keys, not data about the member.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from loyalty.errors import UnknownMemberError
from loyalty.models import (
    Consent,
    CrmLink,
    Enrollment,
    Event,
    LedgerEntry,
    Member,
    Message,
    Redemption,
    Referral,
    Suppression,
    Survey,
)

__all__ = ["EXPORT_FORMAT", "export_member", "outbox_bodies"]

#: Names the document's shape; a later change to it gets a new one.
EXPORT_FORMAT = "loyalty-member-export/1"

#: Reads the stored bodies of these messages: message id → file name → text.
Bodies = Callable[[list[int]], dict[int, dict[str, str]]]

_MEMBER_FIELDS = (
    "external_id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "locale",
    "time_zone",
    "birthday",
    "tier",
    "points_balance",
    "lifetime_points",
    "referral_code",
    "orders_count",
    "total_spent",
    "last_order_at",
    "email_consent",
    "sms_consent",
    "attributes",
    "enrolled_at",
    "created_at",
    "updated_at",
    "erased_at",
)


def export_member(
    session: Session, member_id: int, *, bodies: Bodies | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """The member's data as JSON-ready values (see the module); `bodies` adds message texts."""
    member = session.get(Member, member_id)
    if member is None:
        raise UnknownMemberError(str(member_id))
    profile = {name: getattr(member, name) for name in _MEMBER_FIELDS}
    if member.referred_by_id is not None:
        referrer = session.get(Member, member.referred_by_id)
        profile["referred_by_code"] = referrer.referral_code if referrer else None
    messages = _rows(session, Message, Message.member_id == member_id, skip={"unsubscribe_token"})
    if bodies is not None and messages:
        texts = bodies([int(message["id"]) for message in messages])
        for message in messages:
            message["bodies"] = texts.get(int(message["id"]), {})
    addresses = [value for value in (member.email, member.phone) if value]
    document = {
        "format": EXPORT_FORMAT,
        "exported_at": now,
        "member": profile,
        "consents": _rows(session, Consent, Consent.member_id == member_id),
        "points_ledger": _rows(session, LedgerEntry, LedgerEntry.member_id == member_id),
        "events": _rows(session, Event, Event.member_id == member_id),
        "enrollments": _rows(session, Enrollment, Enrollment.member_id == member_id),
        "messages": messages,
        "surveys": _rows(session, Survey, Survey.member_id == member_id, skip={"token"}),
        "referrals": _referrals(session, member_id),
        "redemptions": _rows(session, Redemption, Redemption.member_id == member_id),
        "crm_links": _rows(session, CrmLink, CrmLink.member_id == member_id),
        "suppressions": _rows(session, Suppression, Suppression.address.in_(addresses))
        if addresses
        else [],
    }
    return {key: _json(value) for key, value in document.items()}


def outbox_bodies(folder: Path) -> Bodies:
    """A `bodies` reader for the local outbox's files (`channels.outbox` writes them as
    OUTBOX_DIR/YYYY-MM-DD/message-{id}.eml or .json)."""

    def read(message_ids: list[int]) -> dict[int, dict[str, str]]:
        wanted = {
            f"message-{message_id}.{suffix}": message_id
            for message_id in message_ids
            for suffix in ("eml", "json")
        }
        found: dict[int, dict[str, str]] = {}
        if not wanted or not folder.is_dir():
            return found
        for day in sorted(folder.iterdir()):
            if not day.is_dir():
                continue
            for path in sorted(day.iterdir()):
                message_id = wanted.get(path.name)
                if message_id is not None:
                    text = path.read_text(encoding="utf-8", errors="replace")
                    found.setdefault(message_id, {})[path.name] = text
        return found

    return read


def _referrals(session: Session, member_id: int) -> list[dict[str, Any]]:
    rows = []
    for referral in session.scalars(
        select(Referral)
        .where(or_(Referral.referrer_id == member_id, Referral.referee_id == member_id))
        .order_by(Referral.id)
    ):
        rows.append(
            {
                "id": referral.id,
                "role": "referrer" if referral.referrer_id == member_id else "referred",
                "code": referral.code,
                "status": referral.status,
                "fraud_verdict": referral.fraud_verdict,
                "created_at": referral.created_at,
                "completed_at": referral.completed_at,
            }
        )
    return rows


def _rows(
    session: Session, model: Any, condition: Any, *, skip: Iterable[str] = ()
) -> list[dict[str, Any]]:
    skipped = {"member_id", *skip}
    columns = [c.key for c in model.__table__.columns if c.key not in skipped]
    return [
        {name: getattr(row, name) for name in columns}
        for row in session.scalars(select(model).where(condition).order_by(model.id))
    ]


def _json(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(key): _json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(item) for item in value]
    return value
